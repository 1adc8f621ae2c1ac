"""An activation that leaves a VM off, end to end through Slack: the page, the card, Start VM.

Signed requests in, the real Bolt app, the fake Slack Web API over HTTP, the simulator; the
VM's start is made to fail with the simulator's fault rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.render.ids import Action
from bot.services import activate as activation_module
from tests.handlers.harness import (
    APPROVALS,
    LEAD,
    REQUESTER,
    action_ids,
    message_text,
    wait_state,
)


def test_a_vm_left_off_by_activation_is_paged_and_started_again_from_the_button(sim, change_bot, monkeypatch):
    monkeypatch.setattr(activation_module, "RETRY_DELAYS", (0.01, 0.02, 0.03))
    bot = change_bot
    vm = sim.pool.vm("winxp-scada")  # PV drivers but no VIF hotplug: activation power-cycles it
    _, url = bot.command("offload off vm=winxp-scada modes=tx", user=REQUESTER)
    assert "waiting for approval" in bot.reply_text(url)
    bot.click(Action.APPROVE, "1", user=LEAD, channel=APPROVALS)
    wait_state(bot, 1, "applied")
    sim.faults.fail("VM.start", "INTERNAL_ERROR", ["xenopsd: domain build failed"], times=4)
    _, url = bot.click(Action.ACTIVATE, "1", user=REQUESTER, channel=APPROVALS)
    assert "Change #2 is waiting for approval" in bot.reply_text(url)
    bot.click(Action.APPROVE, "2", user=LEAD, channel=APPROVALS)
    activation = wait_state(bot, 2, "failed")
    assert sim.pool.fields(vm)["power_state"] == "Halted"

    page = bot.fake.wait_for(
        "chat.postMessage",
        predicate=lambda c: c.args.get("thread_ts") == activation.message_ts and Action.START_VM in str(c.args),
    )[-1]  # the page (the summary that follows says it too, without the button)
    page_text = message_text(page.response["message"])
    assert f"<@{REQUESTER}>" in page_text and f"<@{LEAD}>" in page_text and "winxp-scada is OFF" in page_text
    on_top = ":rotating_light:"  # the top of the card
    card = wait_card(bot, activation.message_ts, lambda c: c["blocks"][0]["text"]["text"].startswith(on_top))
    assert Action.START_VM in action_ids(card)

    _, url = bot.click(Action.START_VM, "2", user=REQUESTER, channel=APPROVALS)
    assert "Change #3 is waiting for approval" in bot.reply_text(url)
    start = wait_state(bot, 3, "pending")
    assert start.kind == "start-vm" and sim.pool.fields(vm)["power_state"] == "Halted"
    bot.click(Action.APPROVE, "3", user=LEAD, channel=APPROVALS)
    wait_state(bot, 3, "applied")
    assert sim.pool.fields(vm)["power_state"] == "Running"
    assert sim.effective_offload(sim.pool.vif("winxp-scada", 0))["tx"] == "off"


def wait_card(bot: Any, ts: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
    """The card once it shows what ``ready`` looks for (it is updated after the state is stored)."""
    deadline = time.monotonic() + timeout
    while not ready(card := bot.fake.message(APPROVALS, ts)):
        assert time.monotonic() < deadline, message_text(card)
        time.sleep(0.02)
    return card


@pytest.fixture(autouse=True)
def _no_leftover_faults(sim):
    yield
    sim.clear_faults()
