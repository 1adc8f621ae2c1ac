"""Slack misbehaving: 5xx and 429 are retried, invalid_auth is reported and nothing recorded is lost."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.models import ChangeRequest
from tests.handlers.harness import REQUESTER, approval_card


def test_server_error_and_rate_limit_on_the_approval_card_are_retried(change_bot):
    bot = change_bot
    bot.fake.fail_next("chat.postMessage", status=500)
    bot.fake.fail_next("chat.postMessage", status=429, retry_after=1)
    _, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER)
    assert "waiting for approval" in bot.reply_text(url, timeout=20)
    approval_card(bot, 1)
    statuses = [c.status for c in bot.fake.calls("chat.postMessage")]
    assert statuses[:3] == [500, 429, 200]


def test_invalid_auth_tells_the_user_and_keeps_the_request(change_bot):
    bot = change_bot
    bot.fake.fail_next("chat.postMessage", status=200, error="invalid_auth")
    _, url = bot.command("offload off vm=win2003-legacy", user=REQUESTER)
    text = bot.reply_text(url, timeout=20)
    assert "change #1 is recorded" in text and "invalid_auth" in text
    with bot.services.sessions() as session:
        assert session.scalars(select(ChangeRequest.state)).all() == ["pending"]
