"""A private answer's full listing goes to the asker's DM with xenbot, never to the channel."""

from __future__ import annotations

from bot.render.ids import Action
from bot.xen.sim import Simulator
from handlers.delivery import DM_NOTE
from tests.handlers.harness import bot_settings, message_text, running_bot


def test_a_private_listing_goes_to_the_askers_dm_and_a_shared_one_to_the_channel(fake_slack, database_url):
    with Simulator.start(fixture="scale:400") as big:
        settings = bot_settings({"big": big}, fake_slack, database_url)
        with running_bot(settings, fake_slack) as bot:
            _, url = bot.command("vms", user="U123", channel="C123")
            reply = bot.replies(url, timeout=30)[0]
            assert reply.get("response_type") == "ephemeral"
            (upload,) = fake_slack.uploads()
            assert upload.channel_id == "D123" and b"win7-00400" in (upload.content or b"")
            assert [c.args.get("users") for c in fake_slack.calls("conversations.open")] == ["U123"]
            assert DM_NOTE in message_text(reply)

            _, url = bot.click(Action.SHARE, "vms", user="U123", channel="C123")  # now for everyone
            shared = bot.replies(url, timeout=30)[0]
            assert shared.get("response_type") == "in_channel"
            assert [u.channel_id for u in fake_slack.uploads()] == ["D123", "C123"]
            assert DM_NOTE not in message_text(shared)


def test_when_no_dm_can_be_opened_the_listing_is_not_shared_and_the_answer_says_why(fake_slack, database_url):
    with Simulator.start(fixture="scale:400") as big:
        settings = bot_settings({"big": big}, fake_slack, database_url)
        with running_bot(settings, fake_slack) as bot:
            _, url = bot.command("vms", user="U0GONE", channel="C123")  # a user Slack does not know
            text = message_text(bot.replies(url, timeout=30)[0])
            assert "Could not send you the full listing privately" in text and "user_not_found" in text
            assert not fake_slack.uploads()
