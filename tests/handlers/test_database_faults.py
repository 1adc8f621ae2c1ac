"""The database down while people use Slack: they are told, and the bot carries on when it is back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db import verify
from bot.db.models import AuditEvent, ChangeRequest
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


def _audited(services, action: str, target: str) -> list[str]:
    with services.sessions() as session:
        return list(session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == action, AuditEvent.target == target)
        ))


def test_commands_answered_during_an_outage_are_audited_once_the_database_is_back(sim, fake_slack, db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("a dropped connection needs a database server (runs on PostgreSQL)")
    with TcpProxy.for_url(db_url) as proxy:
        settings = bot_settings({"demo": sim}, fake_slack, proxy.url(db_url))
        with running_bot(settings, fake_slack) as bot:
            bot.command("vms", user=REQUESTER)  # warm: the pool is read, the database answers
            proxy.cut()
            for _ in range(2):
                _, url = bot.command("pools", user=REQUESTER)
                assert "demo" in bot.reply_text(url, timeout=20)  # answered from the pool
            deadline = time.monotonic() + 20
            while bot.services.audit.pending < 2:
                assert time.monotonic() < deadline, "the audit events were not kept"
                time.sleep(0.05)
            proxy.restore()
            deadline = time.monotonic() + 30
            while len(_audited(bot.services, "command.run", "pools")) < 2:
                assert time.monotonic() < deadline, "the delayed audit events were never written"
                time.sleep(0.1)
            assert bot.services.audit.pending == 0
            assert _audited(bot.services, "command.run", "pools") == [REQUESTER, REQUESTER]
            with bot.services.sessions() as session:
                assert verify(session).ok


def test_audit_events_kept_through_an_outage_are_bounded_and_keep_their_time(db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("a dropped connection needs a database server (runs on PostgreSQL)")
    from bot.db import make_engine, session_factory, upgrade
    from bot.services.audit import AuditLog

    with TcpProxy.for_url(db_url) as proxy:
        engine = make_engine(proxy.url(db_url))
        try:
            upgrade(engine)
            log = AuditLog(session_factory(engine), max_pending=3)
            proxy.cut()
            started = datetime.now(UTC)
            for i in range(5):
                log.record(actor="U1", action="command.run", target=f"t{i}")
            assert (log.pending, log.dropped) == (3, 2)  # the oldest go first, each one logged
            proxy.restore()
            deadline = time.monotonic() + 30
            while log.pending:
                assert time.monotonic() < deadline, "the kept audit events were never written"
                time.sleep(0.05)
            log.record(actor="U1", action="command.run", target="after")
            with session_factory(engine)() as session:
                rows = session.execute(select(AuditEvent.target, AuditEvent.at).order_by(AuditEvent.id)).all()
                assert verify(session).ok
            assert [t for t, _ in rows] == ["t2", "t3", "t4", "after"]
            assert all(at < started + timedelta(seconds=5) for _, at in rows[:3])  # when it happened
        finally:
            engine.dispose()
