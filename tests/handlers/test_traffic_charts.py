"""Traffic charts end to end: ``xenbot serve --http``, the fake Slack, the simulator's /rrd_updates.

A chart is a PNG uploaded with ``files_upload_v2``: under an alert's diagnosis (in its thread)
and behind the "Traffic, last hour" button of ``/xen vif`` (privately, in the person's DM).
When the RRDs cannot be read, the thread says why and the diagnosis stands without it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.render.ids import Action
from tests.handlers.harness import REQUESTER, bot_settings, running_bot
from tests.handlers.test_alert_flow import ALERTS, icinga, text_of, thread_replies

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def chart_bot(sim, fake_slack, db_url):
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS])
    with running_bot(settings, fake_slack) as bot:
        yield bot


def wait_upload(bot, predicate, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        done = [f for f in bot.fake.uploads() if f.completed and predicate(f)]
        if done:
            return done[-1]
        assert time.monotonic() < deadline, f"no upload; uploads: {bot.fake.uploads()!r}"
        time.sleep(0.05)


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    return next(e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action_id)


def test_alert_diagnosis_thread_gets_the_vms_traffic_chart(chart_bot):
    bot = chart_bot
    ts = "1710160000.000100"
    assert bot.event(icinga("win7-kiosk", ts), event_id="EvChart1") == 200
    assert "win7-kiosk" in text_of(thread_replies(bot, ts)[0])  # the diagnosis comes first
    chart = wait_upload(bot, lambda f: f.thread_ts == ts)
    assert chart.channel_id == ALERTS and chart.content.startswith(PNG)
    assert chart.filename == "traffic-win7-kiosk.png" and "VIF traffic" in (chart.title or "")


def test_vif_button_sends_the_chart_privately(chart_bot):
    bot = chart_bot
    _status, url = bot.command("vif win7-kiosk:0")
    answer = bot.replies(url)[-1]
    traffic = button(answer, Action.TRAFFIC)
    assert traffic["text"]["text"] == "Traffic, last hour"
    for block in answer["blocks"]:  # Block Kit as slack_sdk's models check it
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
    _status, clicked = bot.click(Action.TRAFFIC, traffic["value"])
    said = text_of(bot.replies(clicked)[-1])
    assert "direct messages" in said, said
    chart = wait_upload(bot, lambda f: f.filename == "traffic-win7-kiosk.png")
    assert chart.content.startswith(PNG)
    assert chart.channel_id and chart.channel_id.startswith("D") and chart.thread_ts is None
    assert chart.channel_id.endswith(REQUESTER[1:])  # the presser's DM, never the channel


def test_vif_button_on_a_halted_vm_says_why_there_is_no_chart(chart_bot):
    bot = chart_bot
    _status, url = bot.command("vif ubuntu-build02:0")
    _status, clicked = bot.click(Action.TRAFFIC, button(bot.replies(url)[-1], Action.TRAFFIC)["value"])
    said = text_of(bot.replies(clicked)[-1])
    assert "No traffic chart for ubuntu-build02" in said and "not running" in said
    assert not [f for f in bot.fake.uploads() if f.filename.endswith(".png")]


def test_no_chart_when_the_host_does_not_answer_the_diagnosis_goes_on(sim, chart_bot):
    """The VM's host unreachable (its address answers nothing): one line in the thread, no upload."""
    bot = chart_bot
    sim.pool.set_field(sim.pool.host("xcp-host2"), "address", "127.0.0.9")
    ts = "1710160100.000100"
    bot.event(icinga("win7-kiosk", ts), event_id="EvChart2")
    replies = thread_replies(bot, ts, count=2, timeout=20)
    assert "Very likely harmless" in text_of(replies[0])
    assert "No traffic chart for win7-kiosk: xcp-host2: host 127.0.0.9 did not answer" in text_of(replies[1])
    assert "The diagnosis above stands without it" in text_of(replies[1])
    assert not [f for f in bot.fake.uploads() if f.thread_ts == ts]
