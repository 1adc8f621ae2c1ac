"""/xen inspection commands, end to end: signed HTTP in, simulator read, answer on response_url."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from bot.db import AuditEvent
from bot.render.blocks import MAX_BLOCKS, MAX_SECTION_TEXT, block_text_size
from bot.render.ids import Action
from bot.xen.sim import Simulator
from tests.handlers.harness import bot_settings, message_text, running_bot
from tests.slack.fixtures import SIGNING_SECRET
from tests.slack.signing import post_signed, sign, slash_command


def test_signed_vifs_command_is_acked_at_once_and_answered_with_real_vifs(sim, bot):
    started = time.monotonic()
    status, response_url = bot.command("vifs win7-kiosk")
    assert status == 200
    assert time.monotonic() - started < 3.0
    reply = bot.replies(response_url)[0]
    assert reply.get("response_type") in (None, "ephemeral")
    text = message_text(reply)
    inventory = bot.services.gateways.get("demo").inventory()
    vif = next(v for v in inventory.vifs.values() if v.vm_name == "win7-kiosk")
    assert vif.mac in text
    for expected in ("Bond 0+1", "1500", "ATTACHED", "rx", "gso", "Microsoft Windows 7 Professional"):
        assert expected in text
    assert Action.SHARE in text


@pytest.mark.parametrize(
    ("headers_fn", "expected"),
    [
        (lambda body: {"X-Slack-Signature": "v0=" + "0" * 64, "X-Slack-Request-Timestamp": str(int(time.time()))}, 401),
        (lambda body: sign(body, SIGNING_SECRET, int(time.time()) - 600), 401),
        (lambda body: sign(body, "not-the-secret"), 401),
    ],
    ids=["bad-signature", "stale-timestamp", "wrong-secret"],
)
def test_forged_requests_are_rejected_without_touching_xapi(sim, bot, headers_fn, expected):
    import urllib.error
    import urllib.request

    sim.reset_call_counts()
    body = slash_command("vifs win7-kiosk", response_url=bot.fake.response_url())
    request = urllib.request.Request(bot.url, data=body, method="POST", headers=headers_fn(body))
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == expected
    time.sleep(0.2)
    assert sim.call_counts() == {}
    assert bot.fake.calls("response_url") == []


def test_unknown_vm_gets_nearest_names(bot):
    _, url = bot.command("vifs win7-kiosc")
    text = bot.reply_text(url)
    assert "No VM matches" in text and "win7-kiosk" in text


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("vifs", "vifs VM"),
        ("offload status", "offload status vm=VM"),
        ("bogus", "/xen help"),
        ("vms colour=red", "vms"),
    ],
)
def test_malformed_commands_answer_with_usage(bot, command, fragment):
    _, url = bot.command(command)
    assert fragment in bot.reply_text(url)


def test_user_input_is_escaped_in_answers(bot):
    _, url = bot.command("vifs <!channel>&x")
    text = bot.reply_text(url)
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;&amp;x" in text


def test_every_inspection_command_answers(bot):
    for command, fragment in [
        ("help", "offload status"),
        ("pools", "demo"),
        ("vms", "win2008r2-sql01"),
        ("vms sql", "win2008r2-sql01"),
        ("vif pfsense-fw01:0", "other_config"),
        ("pifs", "bond0"),
        ("pifs host=xcp-host2", "xcp-host2"),
        ("pif xcp-host1:eth2", "management"),
        ("offload status vm=pfsense-fw01", "MOST COMMON"),
        ("offload status host=xcp-host1", "PIFs"),
        ("offload status pool=demo", "differ from the most common setting"),
    ]:
        _, url = bot.command(command)
        text = bot.reply_text(url)
        assert fragment in text, (command, text[:500])
        assert ":warning:" not in text, (command, text[:500])


def test_xapi_down_gets_a_clear_answer_after_the_ack(sim, fake_slack, database_url):
    settings = bot_settings({"demo": sim}, fake_slack, database_url)
    with running_bot(settings, fake_slack) as bot:
        sim.faults.drop("*", share=1.0)
        started = time.monotonic()
        status, url = bot.command("vifs win7-kiosk")
        assert status == 200 and time.monotonic() - started < 3.0
        text = bot.reply_text(url, timeout=20)
        assert "not answering" in text and "demo" in text


def test_unauthorised_user_is_refused_and_the_refusal_is_audited(sim, fake_slack, database_url):
    fake_slack.add_user("U0OPS", name="olga")
    fake_slack.add_usergroup("S0OPS", ["U0OPS"])
    settings = bot_settings({"demo": sim}, fake_slack, database_url, operators=["S0OPS"])
    with running_bot(settings, fake_slack) as bot:
        sim.reset_call_counts()
        _, url = bot.command("vms", user="U999")
        assert "not on xenbot's operator list" in bot.reply_text(url)
        assert not any(k.endswith("get_all_records") for k in sim.call_counts())
        _, url = bot.command("vms", user="U0OPS")  # member through the user group
        assert "win7-kiosk" in bot.reply_text(url)
        with bot.services.sessions() as session:
            refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "command.refused")).all()
        assert [(e.actor, e.target) for e in refused] == [("U999", "vms")]


def test_share_button_posts_in_channel_and_rechecks_access(sim, fake_slack, database_url):
    settings = bot_settings({"demo": sim}, fake_slack, database_url, operators=["U123"])
    with running_bot(settings, fake_slack) as bot:
        _, url = bot.click(Action.SHARE, "vifs win7-kiosk", user="U123")
        shared = bot.replies(url)[0]
        assert shared["response_type"] == "in_channel"
        assert "Shared by <@U123>" in message_text(shared)
        _, url = bot.click(Action.SHARE, "vifs win7-kiosk", user="U777")
        refused = bot.replies(url)[0]
        assert refused.get("response_type") in (None, "ephemeral")
        assert "operator list" in message_text(refused)


def test_pool_with_3000_vifs_stays_within_slack_limits(fake_slack, database_url):
    with Simulator.start(fixture="scale:1000") as big:
        settings = bot_settings({"big": big}, fake_slack, database_url)
        with running_bot(settings, fake_slack) as bot:
            assert len(bot.services.gateways.get("big").inventory().vifs) == 3000
            for command in ("vms", "pifs", "offload status pool=big"):
                _, url = bot.command(command)
                reply = bot.replies(url, timeout=30)[0]
                blocks = reply["blocks"]
                assert len(blocks) <= MAX_BLOCKS
                assert all(len(b.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT for b in blocks)
                assert sum(block_text_size(b) for b in blocks) <= 12000
            uploads = fake_slack.uploads()
            assert uploads, "the full VM listing should be attached as a file"
            assert any(b"vm-0999" in u.content or b"0999" in u.content for u in uploads)


def test_retried_command_delivery_is_answered_each_time_but_events_are_deduplicated(bot):
    # Slash commands are never retried by Slack; events are: the same event_id twice is one delivery.
    event = {"type": "app_mention", "user": "U123", "text": "hi", "channel": "C123", "ts": "1.1", "event_ts": "1.1"}
    assert bot.event(event, event_id="Ev1") in (200, 404)
    assert bot.event(event, event_id="Ev1", retry=1) == 200


def test_rate_limited_upload_is_retried(fake_slack, database_url):
    with Simulator.start(fixture="scale:400") as big:
        settings = bot_settings({"big": big}, fake_slack, database_url)
        with running_bot(settings, fake_slack) as bot:
            fake_slack.fail_next("files.getUploadURLExternal", status=429, retry_after=1)
            _, url = bot.command("vms")
            bot.replies(url, timeout=30)
            assert len(fake_slack.uploads()) == 1
            attempts = fake_slack.calls("files.getUploadURLExternal")
            assert [c.status for c in attempts] == [429, 200]


def test_a_raw_post_with_valid_signature_but_junk_body_does_not_crash(bot):
    status, _h, _b = post_signed(bot.url, b"garbage=1", SIGNING_SECRET, "application/x-www-form-urlencoded")
    assert status in (200, 404)


def test_a_pool_slower_than_its_timeout_gets_a_clear_answer_and_the_next_command_works(sim, fake_slack, database_url):
    settings = bot_settings({"demo": sim}, fake_slack, database_url)
    settings = settings.model_copy(update={"pools": [settings.pools[0].model_copy(update={"timeout_seconds": 0.5})]})
    with running_bot(settings, fake_slack) as bot:
        sim.faults.hang("VM.get_all_records")
        try:
            status, url = bot.command("vifs win7-kiosk")
            assert status == 200  # acked while XAPI keeps us waiting
            text = bot.reply_text(url, timeout=30)
            assert "not answering (timed out)" in text and "Nothing was changed" in text
        finally:
            sim.faults.release()
        _, url = bot.command("vifs win7-kiosk")
        assert "win7-kiosk" in bot.reply_text(url, timeout=20) and "not answering" not in bot.reply_text(url)
