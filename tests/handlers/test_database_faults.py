"""The database down while people use Slack: they are told, and the bot carries on when it is back."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.db.models import ChangeRequest
from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, bot_settings, running_bot
from tests.tcp_proxy import TcpProxy


def test_a_command_during_a_database_outage_is_answered_and_the_next_one_works(sim, fake_slack, db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("a dropped connection needs a database server (runs on PostgreSQL)")
    with TcpProxy.for_url(db_url) as proxy:
        settings = bot_settings(
            {"demo": sim}, fake_slack, proxy.url(db_url), approvers=[LEAD], approvals_channel=APPROVALS
        )
        with running_bot(settings, fake_slack) as bot:
            proxy.cut()
            status, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER)
            assert status == 200
            text = bot.reply_text(url, timeout=20)
            assert "database is not answering" in text and "reference" in text

            proxy.restore()
            _, url = bot.command("offload off vm=win7-kiosk", user=REQUESTER)
            assert "waiting for approval" in bot.reply_text(url, timeout=20)
            with bot.services.sessions() as session:
                assert session.scalars(select(ChangeRequest.state)).all() == ["pending"]
