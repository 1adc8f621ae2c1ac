"""The offload form and "Explain with xenbot" end to end through ``xenbot serve --http``:
modal opened, target options answered from live inventory, errors back into the form, the
plan shown, the request made through the same service (same audit), and the private answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.models.blocks import Block, ConfirmObject
from slack_sdk.models.views import View
from sqlalchemy import select

from bot.db import AuditEvent
from bot.db.models import ChangeRequest
from bot.render import forms as render
from bot.render.ids import Action
from handlers.forms import SHORTCUT
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, RunningBot, approval_card, bot_settings, running_bot
from tests.handlers.test_alert_flow import corpus
from tests.slack.signing_views import (
    block_suggestion_payload,
    message_action_payload,
    shortcut_payload,
    view_block_actions_payload,
    view_submission_payload,
)


@pytest.fixture
def form_bot(sim, fake_slack, db_url) -> Iterator[RunningBot]:
    settings = bot_settings({"demo": sim}, fake_slack, db_url, approvers=[LEAD, REQUESTER],
                            approvals_channel=APPROVALS, operators=[REQUESTER, LEAD])
    with running_bot(settings, fake_slack) as bot:
        yield bot


def sent_views(bot: RunningBot, method: str) -> list[dict[str, Any]]:
    return [c.arg_json("view") for c in bot.fake.calls(method)]


def wait_view(bot: RunningBot, view_id: str, callback_id: str, count: int = 1) -> dict[str, Any]:
    calls = bot.fake.wait_for("views.update", count=count, timeout=15,
                              predicate=lambda c: c.args.get("view_id") == view_id
                              and c.arg_json("view").get("callback_id") == callback_id)
    assert calls[-1].ok, calls[-1].response
    return calls[-1].response["view"]


def selected(value: str, text: str) -> dict[str, Any]:
    return {"type": "external_select", "selected_option": {"text": {"type": "plain_text", "text": text},
                                                            "value": value}}


def form_values(target: dict[str, Any] | None, modes: list[str], action: str = "off", kind: str = "vm",
                reason: str = "discards on the kiosk") -> dict[str, Any]:
    pick = {"type": "static_select"}
    return {
        render.POOL_BLOCK: {render.POOL_ACTION: pick | {"selected_option": {"value": "demo"}}},
        render.SCOPE_BLOCK: {render.SCOPE_ACTION: pick | {"selected_option": {"value": kind}}},
        render.target_block(kind): {render.TARGET_ACTION: target or {"type": "external_select",
                                                                     "selected_option": None}},
        render.modes_block(kind): {render.MODES_ACTION: {"type": "checkboxes", "selected_options": [
            {"value": m} for m in modes]}},
        render.ACTION_BLOCK: {render.ACTION_ACTION: {"type": "radio_buttons", "selected_option": {"value": action}}},
        render.REASON_BLOCK: {render.REASON_ACTION: {"type": "plain_text_input", "value": reason}},
    }


def test_offload_form_from_shortcut_to_request(sim, form_bot):
    bot = form_bot
    # The global shortcut opens the form.
    status, _ = bot.interact(shortcut_payload(SHORTCUT, user_id=REQUESTER))
    assert status == 200
    opened = bot.fake.wait_for("views.open", timeout=10)[-1]
    assert opened.ok, opened.response
    form = opened.response["view"]
    modes = next(b for b in form["blocks"] if b.get("block_id") == render.modes_block("vm"))["element"]
    assert form["callback_id"] == render.FORM_CALLBACK
    assert [o["value"] for o in modes["options"]] == ["rx", "tx", "sg", "tso", "ufo", "gso"]  # no gro/lro on VIFs
    assert [o["value"] for o in modes["initial_options"]] == ["rx", "tx", "sg", "tso", "ufo", "gso"]

    # The target search answers from live inventory, in the ack.
    status, answer = bot.interact(block_suggestion_payload(form, render.TARGET_ACTION, render.target_block("vm"),
                                                           "win7", user_id=REQUESTER))
    assert status == 200 and answer is not None
    labels = [o["text"]["text"] for o in answer["options"]]
    assert any(label.startswith("win7-kiosk") for label in labels)
    kiosk = next(o for o in answer["options"] if o["text"]["text"].startswith("win7-kiosk"))
    assert kiosk["value"].startswith("vm:")

    # Changing the scope to PIF offers gro and lro.
    scope = {"type": "static_select", "selected_option": {"value": "pif"}}
    bot.interact(view_block_actions_payload(form, render.SCOPE_ACTION, "", block_id=render.SCOPE_BLOCK,
                                            element=scope, user_id=REQUESTER))
    pif_form = wait_view(bot, form["id"], render.FORM_CALLBACK)
    modes = next(b for b in pif_form["blocks"] if b.get("block_id") == render.modes_block("pif"))["element"]
    assert {"gro", "lro"} <= {o["value"] for o in modes["options"]}
    assert render.target_block("pif") in json.dumps(pif_form["blocks"])

    # Field errors go back into the form; nothing is planned or requested.
    status, answer = bot.interact(view_submission_payload(form, form_values(None, []), user_id=REQUESTER))
    assert answer is not None and answer["response_action"] == "errors"
    assert set(answer["errors"]) == {render.target_block("vm"), render.modes_block("vm")}

    # A target gone by the time it is planned: the form again, saying so.
    gone = form_values(selected("vm:00000000-0000-0000-0000-000000000000", "ghost"), ["tx"])
    _, answer = bot.interact(view_submission_payload(form, gone, user_id=REQUESTER))
    assert answer is not None and answer["response_action"] == "update"
    again = wait_view(bot, form["id"], render.FORM_CALLBACK, count=2)
    assert "00000000" in json.dumps(again["blocks"][0])

    # A good submission shows the plan, then Request makes the ordinary request.
    values = form_values(selected(kiosk["value"], kiosk["text"]["text"]), ["rx", "tx", "sg", "tso", "ufo", "gso"])
    status, answer = bot.interact(view_submission_payload(form, values, user_id=REQUESTER))
    assert answer is not None and answer["response_action"] == "update"
    summary = wait_view(bot, form["id"], render.SUMMARY_CALLBACK)
    assert "ethtool-tx" in json.dumps(summary["blocks"]) and summary["submit"]["text"] == "Request"
    status, answer = bot.interact(view_submission_payload(summary, {}, user_id=REQUESTER))
    assert answer is not None and answer["response_action"] == "update"
    done = bot.fake.wait_for("views.update", timeout=15, predicate=lambda c: "waiting for approval" in str(
        c.args.get("view")))[-1]
    assert done.ok
    card = approval_card(bot, 1)
    assert Action.APPROVE in json.dumps(card["blocks"]) and "discards on the kiosk" in json.dumps(card["blocks"])
    with bot.services.sessions() as session:
        request = session.get(ChangeRequest, 1)
        assert request is not None and request.requester == REQUESTER and request.scope_label == "win7-kiosk"
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "change.requested")).one()
    assert audit.actor == REQUESTER and audit.details["modes"] == ["rx", "tx", "sg", "tso", "ufo", "gso"]

    for view in sent_views(bot, "views.open") + sent_views(bot, "views.update"):
        View(**view).validate_json()
        assert len(view["blocks"]) <= 100


def test_form_refuses_who_slash_xen_refuses(form_bot):
    bot = form_bot
    bot.interact(shortcut_payload(SHORTCUT, user_id="U999"))
    opened = bot.fake.wait_for("views.open", timeout=10)[-1]
    assert "operator list" in json.dumps(opened.arg_json("view")) and not any(
        b.get("type") == "input" for b in opened.arg_json("view")["blocks"])
    _status, answer = bot.interact(block_suggestion_payload(opened.response["view"], render.TARGET_ACTION,
                                                           render.target_block("vm"), "win", user_id="U999"))
    assert answer == {"options": []}
    url = bot.fake.response_url(channel_id="C123", user_id="U999")
    bot.interact(message_action_payload(render.EXPLAIN_CALLBACK, corpus("zabbix_problem"), response_url=url,
                                        user_id="U999"))
    refused = bot.replies(url)[-1]
    assert refused["response_type"] == "ephemeral" and "operator list" in json.dumps(refused)
    assert "win2008r2-sql01" not in json.dumps(refused)


def test_host_wide_approve_asks_for_confirmation(form_bot):
    bot = form_bot
    host = next(iter(bot.services.gateways.get("demo").inventory().hosts.values()))
    _, url = bot.command(f"offload off host={host.name} modes=tso", user=REQUESTER)
    assert "waiting for approval" in bot.reply_text(url)
    card = approval_card(bot, 1)
    approve = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == Action.APPROVE)
    confirm = approve["confirm"]
    with bot.services.sessions() as session:
        request = session.get(ChangeRequest, 1)
        assert request is not None
        count = len(request.plan["interfaces"])
    assert f"changes {count} interfaces on host {host.name}" in confirm["text"]["text"]
    assert "need activation" in confirm["text"]["text"] and "replug" in confirm["text"]["text"]
    assert len(confirm["text"]["text"]) <= 300 and len(confirm["title"]["text"]) <= 100
    ConfirmObject.parse(confirm).validate_json()  # type: ignore[union-attr]  # Slack's model and its limits
    for block in card["blocks"]:
        Block.parse(block).validate_json()  # type: ignore[union-attr]
    _, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER)
    vm_card = approval_card(bot, 2)
    assert "confirm" not in json.dumps(vm_card["blocks"])


def test_explain_with_xenbot_answers_privately(form_bot):
    bot = form_bot
    message = corpus("zabbix_problem")
    for key in ("channel", "event_ts", "channel_type"):  # a shortcut's message is the stored message
        message.pop(key)
    url = bot.fake.response_url(channel_id="C0RANDOM", user_id=REQUESTER)
    status, _ = bot.interact(message_action_payload(render.EXPLAIN_CALLBACK, message, response_url=url,
                                                    user_id=REQUESTER, channel_id="C0RANDOM"))
    assert status == 200
    answer = bot.replies(url)[-1]
    assert answer["response_type"] == "ephemeral"
    text = json.dumps(answer)
    assert "win2008r2-sql01" in text and "Very likely harmless" in text and Action.SHARE in text
    assert not [c for c in bot.fake.calls("chat.postMessage") if c.args.get("channel") == "C0RANDOM"]

    # A message that is no alert: said so, privately.
    plain = {"type": "message", "user": LEAD, "text": "lunch anyone?", "ts": "1710000000.000100"}
    url = bot.fake.response_url(channel_id="C0RANDOM", user_id=REQUESTER)
    bot.interact(message_action_payload(render.EXPLAIN_CALLBACK, plain, response_url=url, user_id=REQUESTER,
                                        channel_id="C0RANDOM"))
    answer = bot.replies(url)[-1]
    assert answer["response_type"] == "ephemeral" and "found no alert" in json.dumps(answer)


def test_policy_form_from_the_home_tab(form_bot):
    bot = form_bot
    from tests.slack.signing_views import app_home_opened

    bot.event(app_home_opened(REQUESTER), event_id="EvHomeP")
    tab = bot.home(REQUESTER, lambda text: render.OPEN_POLICY in text and render.OPEN_FORM in text)
    # the Home tab's "Change offloading" opens the offload form
    bot.interact(view_block_actions_payload(tab, render.OPEN_FORM, "vm", block_id="home-forms", user_id=REQUESTER))
    opened = bot.fake.wait_for("views.open", timeout=10)[-1]
    assert opened.ok and opened.response["view"]["callback_id"] == render.FORM_CALLBACK
    bot.interact(view_block_actions_payload(tab, render.OPEN_POLICY, "vifs", block_id="home-forms",
                                            user_id=REQUESTER))
    opened = bot.fake.wait_for("views.open", count=2, timeout=10)[-1]
    assert opened.ok, opened.response
    form = opened.response["view"]
    assert form["callback_id"] == render.POLICY_CALLBACK

    def values(target: str, modes: list[str], exclude: str = "") -> dict[str, Any]:
        radio = {"type": "radio_buttons"}
        return {
            render.POOL_BLOCK: {render.POOL_ACTION: {"type": "static_select", "selected_option": {"value": "demo"}}},
            render.POLICY_TARGET: {render.POLICY_TARGET: radio | {"selected_option": {"value": target}}},
            render.modes_block("pif"): {render.MODES_ACTION: {"type": "checkboxes", "selected_options": [
                {"value": m} for m in modes]}},
            render.ACTION_BLOCK: {render.ACTION_ACTION: radio | {"selected_option": {"value": "off"}}},
            render.POLICY_MODE: {render.POLICY_MODE: radio | {"selected_option": {"value": "report"}}},
            render.EXCLUDE_NAMES: {render.EXCLUDE_NAMES: {"type": "plain_text_input", "value": exclude}},
        }

    # gro on VIFs goes back into the form
    _, answer = bot.interact(view_submission_payload(form, values("vifs", ["tx", "gro"]), user_id=REQUESTER))
    assert answer is not None and answer["response_action"] == "errors"
    assert "gro" in answer["errors"][render.modes_block("pif")]
    _, answer = bot.interact(view_submission_payload(form, values("vifs", ["tx"], "lab-*"), user_id=REQUESTER))
    assert answer is not None and answer["response_action"] == "update"
    done = bot.fake.wait_for("views.update", timeout=15, predicate=lambda c: "waiting for approval" in str(
        c.args.get("view")))[-1]
    assert done.ok and "lab-*" in json.dumps(done.arg_json("view"))
    with bot.services.sessions() as session:
        request = session.get(ChangeRequest, 1)
        assert request is not None and request.kind == "policy" and request.requester == REQUESTER
    for view in sent_views(bot, "views.open") + sent_views(bot, "views.update"):
        View(**view).validate_json()


def test_explain_share_posts_for_the_channel(form_bot):
    bot = form_bot
    url = bot.fake.response_url(channel_id="C123", user_id=REQUESTER)
    bot.interact(message_action_payload(render.EXPLAIN_CALLBACK, corpus("zabbix_problem"), response_url=url,
                                        user_id=REQUESTER, channel_id="C123"))
    answer = bot.replies(url)[-1]
    share = next(e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == Action.SHARE)
    _, url = bot.click(Action.SHARE, share["value"], user=REQUESTER, channel="C123")
    shared = bot.replies(url)[-1]
    assert shared["response_type"] == "in_channel" and "win2008r2-sql01" in json.dumps(shared)
