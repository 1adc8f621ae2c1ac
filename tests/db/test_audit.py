"""The audit log: chaining, verification, append-only enforcement, concurrency and the CLI."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.cli import main
from bot.db import GENESIS_HASH, AuditEvent, head, recent, record, verify
from bot.db.models import chain_hash


def _record_n(factory: sessionmaker[Session], n: int, action: str = "command.ran") -> list[AuditEvent]:
    with factory.begin() as session:
        return [record(session, actor=f"U{i:03d}", action=action, target=f"vm:{i}") for i in range(n)]


@contextmanager
def _triggers_bypassed(engine: Engine) -> Iterator[None]:
    """What an attacker with database access would do: get the append-only triggers out of the way."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            saved: list[str] = []
        else:
            saved = list(connection.scalars(text("SELECT sql FROM sqlite_master WHERE type = 'trigger'")))
            for name in connection.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all():
                connection.execute(text(f'DROP TRIGGER "{name}"'))
    yield
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
        for sql in saved:
            connection.execute(text(sql))


def test_records_form_a_chain(session_factory: sessionmaker[Session]) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    # Not JSON-native on purpose: a tuple, a datetime, a float JSONB prints as an int, an int key.
    details: dict[Any, Any] = {"offload": ("tso", "gso"), "when": when, "ratio": 1e16, 7: "seven"}
    with session_factory.begin() as session:
        first = record(
            session,
            actor="U123",
            action="change.requested",
            target="pool:lab vif:eth0",
            details=details,
            channel="C42",
            request_id="r-1",
        )
        second = record(session, actor="system", action="change.approved", target="req:1")
    with session_factory.begin() as session:
        third = record(session, actor="policy:7", action="command.refused", target="vm:db1")

    assert [first.id, second.id, third.id] == [1, 2, 3]
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    # details are stored as the database returns them, so the hash covers what is stored.
    assert first.details == {"offload": ["tso", "gso"], "when": str(when), "ratio": 10**16, "7": "seven"}
    assert second.details == {}

    with session_factory() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [row.hash for row in rows] == [first.hash, second.hash, third.hash]
        for row in rows:
            assert row.at.tzinfo is not None and row.at.utcoffset() == UTC.utcoffset(None)
            assert row.hash == row.compute_hash()
        stored = rows[0]
        assert (stored.channel, stored.request_id, stored.details) == ("C42", "r-1", first.details)
        # The documented formula, spelled out once.
        payload = json.dumps(
            {
                "id": 1,
                "at": stored.at.isoformat(timespec="microseconds"),
                "actor": "U123",
                "action": "change.requested",
                "target": "pool:lab vif:eth0",
                "channel": "C42",
                "request_id": "r-1",
                "details": first.details,
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        assert stored.hash == hashlib.sha256((GENESIS_HASH + payload).encode()).hexdigest()


def test_rollback_leaves_no_trace_and_no_gap(session_factory: sessionmaker[Session]) -> None:
    _record_n(session_factory, 2)
    with session_factory() as session:
        record(session, actor="U1", action="change.requested", target="x")
        session.rollback()
    _record_n(session_factory, 1)
    with session_factory() as session:
        result = verify(session)
        assert result.ok and result.rows_checked == 3
        assert session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all() == [1, 2, 3]


def test_verify_empty_and_ok(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        assert verify(session).ok
        assert verify(session).rows_checked == 0
    events = _record_n(session_factory, 5)
    with session_factory() as session:
        result = verify(session)
    assert result.ok and result.rows_checked == 5 and result.first_bad_id is None
    assert result.head_hash == events[-1].hash


@pytest.mark.parametrize(
    ("tamper", "bad_id", "reason"),
    [
        ("UPDATE audit_event SET actor = 'U999' WHERE id = 3", 3, "hash mismatch"),
        ("UPDATE audit_event SET hash = '" + "f" * 64 + "' WHERE id = 5", 5, "hash mismatch"),
        ("UPDATE audit_event SET at = at - interval '1 second' WHERE id = 2", 2, "hash mismatch"),
        ("UPDATE audit_event SET details = '{\"x\": 1}' WHERE id = 4", 4, "hash mismatch"),
        ("DELETE FROM audit_event WHERE id = 3", 4, "gap"),
        ("DELETE FROM audit_event WHERE id = 1", 2, "gap"),
    ],
    ids=["actor", "hash", "time", "details", "delete-middle", "delete-first"],
)
def test_tampering_is_detected(
    engine: Engine, session_factory: sessionmaker[Session], tamper: str, bad_id: int, reason: str
) -> None:
    _record_n(session_factory, 5)
    if engine.dialect.name == "sqlite":
        tamper = tamper.replace("at - interval '1 second'", "datetime(at, '-1 second')")
    with _triggers_bypassed(engine), engine.begin() as connection:
        connection.execute(text(tamper))
    with session_factory() as session:
        result = verify(session)
    assert not result.ok
    assert result.first_bad_id == bad_id
    assert result.reason is not None and result.reason.startswith(reason)


def test_rewriting_a_row_with_a_valid_hash_breaks_the_next_link(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    events = _record_n(session_factory, 4)
    forged = events[1]
    forged_hash = chain_hash(
        forged.prev_hash,
        id=forged.id,
        at=forged.at,
        actor="U_FORGED",
        action=forged.action,
        target=forged.target,
        channel=forged.channel,
        request_id=forged.request_id,
        details=forged.details,
    )
    with _triggers_bypassed(engine), engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_event SET actor = 'U_FORGED', hash = :h WHERE id = 2"), {"h": forged_hash}
        )
    with session_factory() as session:
        result = verify(session)
    assert (result.ok, result.first_bad_id, result.rows_checked) == (False, 3, 3)
    assert result.reason is not None and result.reason.startswith("broken link")
    assert result.head_hash == forged_hash


def test_update_and_delete_are_refused(engine: Engine, session_factory: sessionmaker[Session]) -> None:
    _record_n(session_factory, 2)
    statements = ["UPDATE audit_event SET actor = 'x'", "DELETE FROM audit_event WHERE id = 2"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_event")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    with pytest.raises(DBAPIError, match="append-only"), session_factory.begin() as session:
        event = session.get(AuditEvent, 1)
        assert event is not None
        event.target = "edited"
    with session_factory() as session:
        assert verify(session).ok and verify(session).rows_checked == 2


def test_a_fork_is_refused_by_the_database(session_factory: sessionmaker[Session]) -> None:
    """The last line of defence if the lock were ever bypassed: one successor per row."""
    first, _second = _record_n(session_factory, 2)
    with pytest.raises(IntegrityError), session_factory.begin() as session:
        fork = AuditEvent(
            id=3, at=datetime.now(UTC), actor="U1", action="a", target="t", details={}, prev_hash=first.hash
        )
        fork.hash = fork.compute_hash()
        session.add(fork)


def test_concurrent_appenders_keep_one_chain(session_factory: sessionmaker[Session]) -> None:
    threads, per_thread = 4, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with session_factory.begin() as session:
                    if i % 2:
                        # A use case usually reads before it writes its audit entry.
                        session.scalar(select(func.count()).select_from(AuditEvent))
                    record(session, actor=f"U{worker}", action="command.ran", target=f"vm:{i}")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    with session_factory() as session:
        result = verify(session)
        actors = session.scalars(select(AuditEvent.actor)).all()
    assert result.ok, result
    assert result.rows_checked == threads * per_thread
    assert sorted(set(actors)) == [f"U{w}" for w in range(threads)]


def test_recent(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as session:
        for action in ["change.requested", "command.ran", "change.approved", "change_x.odd", "command.refused"]:
            record(session, actor="U1", action=action, target="t")
    with session_factory() as session:
        assert [e.action for e in recent(session, 2)] == ["command.refused", "change_x.odd"]
        assert [e.action for e in recent(session, 10, "change.")] == ["change.approved", "change.requested"]
        # "_" is a LIKE wildcard; the prefix must match literally.
        assert [e.action for e in recent(session, 10, "change_")] == ["change_x.odd"]
        assert recent(session, 10, "nothing.") == []


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def config_file(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("XENBOT_DATABASE_URL", "XENBOT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "xenbot.toml"
    path.write_text(f"database_url = {json.dumps(db_url)}\n", encoding="utf-8")
    return path


def test_cli_upgrade_current_verify_tail(config_file: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(config_file)]
    assert main([*config, "db", "current", "--check"]) == 1
    captured = capsys.readouterr()
    assert "not migrated" in captured.out or "no database yet" in captured.err
    assert main([*config, "audit", "verify"]) == 1
    assert "xenbot db upgrade" in capsys.readouterr().err

    assert main([*config, "db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"database upgraded: (empty) -> {head()}"
    assert main([*config, "db", "upgrade"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*config, "db", "current", "--check"]) == 0
    assert capsys.readouterr().out.strip() == f"{head()} (head)"

    from bot.db import make_engine, session_factory

    engine = make_engine(db_url)
    try:
        _record_n(session_factory(engine), 3)
        assert main([*config, "audit", "verify"]) == 0
        assert capsys.readouterr().out.splitlines()[0].startswith("audit chain OK: 3 rows, not keyed")
        assert main([*config, "audit", "tail", "-n", "2"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines] == ["2", "3"]

        with _triggers_bypassed(engine), engine.begin() as connection:
            connection.execute(text("UPDATE audit_event SET target = 'vm:other' WHERE id = 2"))
        assert main([*config, "audit", "verify"]) == 1
        assert capsys.readouterr().out.startswith("audit chain BROKEN at row 2: hash mismatch")
    finally:
        engine.dispose()


def test_cli_config_error_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("XENBOT_DATABASE_URL", raising=False)
    path = tmp_path / "xenbot.toml"
    path.write_text('database_url = "mysql://nope"\n', encoding="utf-8")
    for command in (["db", "upgrade"], ["db", "current"], ["audit", "verify"], ["audit", "tail"]):
        assert main(["--config", str(path), *command]) == 2
        assert "database_url" in capsys.readouterr().err


def test_read_only_commands_never_create_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("XENBOT_DATABASE_URL", "XENBOT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "var" / "lib" / "xenbot"  # as systemd's StateDirectory= makes it: empty
    folder.mkdir(parents=True)
    path = tmp_path / "xenbot.toml"
    path.write_text(f"database_url = {json.dumps(f'sqlite:///{folder}/xenbot.db')}\n", encoding="utf-8")
    config = ["--config", str(path)]
    for command in (["status"], ["db", "current"], ["db", "current", "--check"], ["audit", "verify"],
                    ["audit", "tail"]):
        assert main([*config, *command]) == 1, command
        captured = capsys.readouterr()
        said = captured.out + captured.err
        assert "no database yet: run `xenbot db upgrade` or start `xenbot serve`" in said, command
        assert "not at the latest revision" not in said
        assert list(folder.iterdir()) == [], f"{command} created a file in {folder}"
    assert main([*config, "db", "upgrade"]) == 0  # the one command that creates it
    assert (folder / "xenbot.db").is_file()
