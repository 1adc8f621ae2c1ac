"""Action ids of every button xenbot posts, in one place.

Handlers route clicks by these ids; tests build clicks with them. Approval
buttons keep ``approve`` / ``reject`` in their ids so monitoring of the Slack
app's interactivity logs can find them.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    SHARE = "xenbot_share_reply"
    PAGE = "xenbot_page"
    APPROVE = "xenbot_approve_change"
    REJECT = "xenbot_reject_change"
    CANCEL = "xenbot_cancel_change"
    ACTIVATE = "xenbot_activate_change"
    START_VM = "xenbot_start_vm_left_off"
    PLUG_VIF = "xenbot_plug_vif_left_unplugged"
    REVERT = "xenbot_revert_change"
    DISABLE_OFFLOAD = "xenbot_disable_offload"
    SHOW_VIFS = "xenbot_show_vifs"
    MUTE = "xenbot_mute_alerts"
    SAVE_POLICY = "xenbot_save_policy"
    POLICY_FIX = "xenbot_policy_fix"
