"""The keyed audit chain and its anchor: what someone holding the bot's database role can no longer hide.

Without a key, anyone who can write ``audit_event`` (triggers disabled or dropped) can edit a row
and recompute every later hash, and deleting the newest rows leaves a valid shorter chain. These
tests do exactly that, as an attacker without the key file would, and expect ``verify`` to notice.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from bot.cli import main
from bot.db import AuditEvent, make_engine, record, session_factory, upgrade, verify
from bot.db.audit import Anchor, AuditKeyError, check_key, head
from bot.db.models import chain_hash
from tests.db.test_audit import _record_n, _triggers_bypassed

KEY = SecretStr("k" * 44)
OTHER_KEY = SecretStr("o" * 44)


def _rehash_unkeyed_from(engine: Engine, first_id: int) -> None:
    """The attacker's move after an edit: recompute every hash from ``first_id`` on (no key to use)."""
    with Session(engine) as session, session.begin():
        events = session.scalars(select(AuditEvent).where(AuditEvent.id >= first_id - 1).order_by(AuditEvent.id)).all()
        prev = events[0].hash if events[0].id < first_id else "0" * 64
        for event in events:
            if event.id < first_id:
                continue
            new = chain_hash(
                prev, id=event.id, at=event.at, actor=event.actor, action=event.action, target=event.target,
                channel=event.channel, request_id=event.request_id, details=event.details)
            session.execute(text("UPDATE audit_event SET prev_hash = :p, hash = :h WHERE id = :i"),
                            {"p": prev, "h": new, "i": event.id})
            prev = new


def _keyed(engine: Engine, key: SecretStr = KEY) -> sessionmaker[Session]:
    return session_factory(engine, audit_key=key)


def test_an_unkeyed_chain_can_be_rewritten_undetected(engine: Engine, session_factory: sessionmaker[Session]) -> None:
    """The weakness this fixes, shown: without a key, edit + recompute passes verify."""
    _record_n(session_factory, 4)
    with _triggers_bypassed(engine):
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit_event SET actor = 'U_FORGED' WHERE id = 2"))
        _rehash_unkeyed_from(engine, 2)
    with session_factory() as session:
        assert verify(session).ok


def test_a_keyed_chain_cannot_be_rewritten_without_the_key(engine: Engine) -> None:
    keyed = _keyed(engine)
    _record_n(keyed, 4)
    with keyed() as session:
        assert verify(session, key=KEY).ok
    with _triggers_bypassed(engine):
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit_event SET actor = 'U_FORGED' WHERE id = 2"))
        _rehash_unkeyed_from(engine, 2)
    with keyed() as session:
        result = verify(session, key=KEY)
        assert (result.ok, result.first_bad_id, result.keyed_from) == (False, 2, 1)
        assert result.reason is not None and result.reason.startswith("hash mismatch")
        # Without the key, a keyed chain is not passed as fine either.
        unkeyed = verify(session)
        assert not unkeyed.ok and unkeyed.reason is not None and "key_file" in unkeyed.reason


def test_rows_from_before_the_key_stay_verifiable_and_protected(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    _record_n(session_factory, 2)  # written before a key was configured
    keyed = _keyed(engine)
    _record_n(keyed, 2)
    with keyed() as session:
        result = verify(session, key=KEY)
        assert (result.ok, result.rows_checked, result.keyed_from) == (True, 4, 3)
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert rows[0].hash == rows[0].compute_hash()  # the old chain, unchanged
        assert rows[2].hash == rows[2].compute_hash(KEY.get_secret_value().encode())
    # Rewriting the old part means re-linking the first keyed row, whose HMAC cannot be redone.
    with _triggers_bypassed(engine):
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit_event SET actor = 'U_FORGED' WHERE id = 1"))
        _rehash_unkeyed_from(engine, 1)
    with keyed() as session:
        result = verify(session, key=KEY)
    assert (result.ok, result.first_bad_id) == (False, 3)


def test_a_wrong_or_missing_key_is_named(engine: Engine, session_factory: sessionmaker[Session]) -> None:
    _record_n(_keyed(engine), 2)
    with session_factory() as session:
        assert check_key(session, KEY) is None
        assert "wrong key" in str(check_key(session, OTHER_KEY))
        assert "key_file" in str(check_key(session, None))
        result = verify(session, key=OTHER_KEY)
        assert not result.ok and result.reason is not None and result.reason.startswith("wrong key")
    # An appender without the key (or with another) is refused instead of breaking the chain.
    for factory in (session_factory, _keyed(engine, OTHER_KEY)):
        with pytest.raises(AuditKeyError), factory.begin() as session:
            record(session, actor="U1", action="command.ran", target="t")
    with session_factory() as session:
        assert verify(session, key=KEY).ok


def test_the_anchor_catches_deleted_newest_rows_and_rewritten_history(engine: Engine) -> None:
    keyed = _keyed(engine)
    _record_n(keyed, 5)
    with keyed() as session:
        anchor = head(session)
    assert anchor is not None and anchor.count == 5
    assert Anchor.parse(str(anchor)) == anchor
    _record_n(keyed, 1)  # the log goes on after the anchor was posted
    with keyed() as session:
        assert verify(session, key=KEY, anchor=anchor).ok
    with _triggers_bypassed(engine), engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_event WHERE id >= 4"))
    with keyed() as session:
        assert verify(session, key=KEY).ok  # a shorter chain is still a valid chain...
        result = verify(session, key=KEY, anchor=anchor)  # ...but not the one that was anchored
    assert (result.ok, result.first_bad_id) == (False, 4)
    assert result.reason is not None and result.reason.startswith("rows deleted")
    forged = Anchor("f" * 64, 3)
    with keyed() as session:
        result = verify(session, key=KEY, anchor=forged)
    assert result.reason is not None and result.reason.startswith("history rewritten")


def test_cli_verify_with_key_and_anchor(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("XENBOT_DATABASE_URL", "XENBOT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    key_file = tmp_path / "audit.key"
    key_file.write_text(KEY.get_secret_value() + "\n", encoding="utf-8")
    config = tmp_path / "xenbot.toml"
    config.write_text(f"database_url = {json.dumps(db_url)}\n[audit]\nkey_file = {json.dumps(str(key_file))}\n")
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        _record_n(_keyed(engine), 3)
        args = ["--config", str(config), "audit", "verify"]
        assert main(args) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "audit chain OK: 3 rows, keyed (HMAC) from row 1"
        anchor = out[-1].removeprefix("head: ")
        assert main([*args, "--anchor", anchor]) == 0
        assert "anchor 3: matches" in capsys.readouterr().out
        with _triggers_bypassed(engine), engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_event WHERE id = 3"))
        assert main([*args, "--anchor", anchor]) == 1
        assert capsys.readouterr().out.startswith("audit chain BROKEN at row 3: rows deleted")
        with pytest.raises(SystemExit):
            main([*args, "--anchor", "nonsense"])
        config.write_text(f"database_url = {json.dumps(db_url)}\n")  # the key file left out
        assert main(args) == 1
        assert capsys.readouterr().out.startswith("audit chain NOT CHECKED from row 1: keyed chain")
    finally:
        engine.dispose()


def _parts(owner: str, bot: str, database: str) -> list[str]:
    """docs/postgresql-roles.sql, its three parts, with this test's names."""
    sql = (Path(__file__).resolve().parents[2] / "docs" / "postgresql-roles.sql").read_text()
    sql = sql.replace("xenbot_owner", owner).replace("xenbot_bot", bot)
    sql = sql.replace("DATABASE xenbot", f'DATABASE "{database}"').replace("CHANGE-ME-OWNER", "pw")
    return sql.replace("CHANGE-ME-BOT", "pw").split("-- Part ")[1:]  # each part's first line is its heading


def _run(connection: object, part: str) -> None:
    body = "\n".join(line for line in part.splitlines()[1:] if not line.lstrip().startswith("--"))
    for statement in filter(None, (s.strip() for s in body.split(";"))):
        connection.exec_driver_sql(statement)  # type: ignore[attr-defined]


@pytest.mark.postgres
def test_the_documented_bot_role_cannot_disable_the_triggers(db_url: str) -> None:
    """docs/postgresql-roles.sql: migrations run as the owner; the bot's role writes rows but cannot ALTER."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no roles")
    suffix = uuid.uuid4().hex[:8]
    owner, bot = f"xenbot_owner_{suffix}", f"xenbot_bot_{suffix}"
    url = make_url(db_url)
    database = str(url.database)
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    roles, grants, after_upgrade = _parts(owner, bot, database)
    as_role: dict[str, Engine] = {}
    try:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{database}" WITH (FORCE)')  # part 1 creates it
            _run(connection, roles)
        for role in (owner, bot):
            as_role[role] = make_engine(url.set(username=role, password="pw").render_as_string(hide_password=False))
        with as_role[owner].connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            _run(connection, grants)
        upgrade(as_role[owner])
        with as_role[owner].connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            _run(connection, after_upgrade)
        keyed = _keyed(as_role[bot])
        _record_n(keyed, 2)  # the bot can do its job...
        for statement in (  # ...and cannot get the append-only rule out of the way
            "ALTER TABLE audit_event DISABLE TRIGGER ALL",
            "ALTER TABLE audit_event DISABLE TRIGGER USER",
            "DROP TRIGGER audit_event_append_only ON audit_event",
            "ALTER TABLE audit_chain_key DISABLE TRIGGER ALL",
            "UPDATE audit_event SET actor = 'x'",
            "DELETE FROM audit_event",
        ):
            refused = pytest.raises(ProgrammingError, match=r"must be owner|permission denied")
            with refused, as_role[bot].begin() as connection:
                connection.exec_driver_sql(statement)
        with keyed() as session:
            assert verify(session, key=KEY).ok
    finally:
        for engine in as_role.values():
            engine.dispose()
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in (bot, owner):
                connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        server.dispose()
