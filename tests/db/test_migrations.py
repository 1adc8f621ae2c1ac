"""The packaged migrations: from empty to head, idempotent, concurrent, and in step with the models."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from bot.db import AuditEvent, Base, current, head, is_up_to_date, make_engine, record, upgrade
from bot.db.migrate import alembic_config


def _triggers(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_event'")
            )
        else:
            rows = connection.execute(
                text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass AND NOT tgisinternal")
            )
        return {row[0] for row in rows}


def _schema_is_head(engine: Engine) -> None:
    assert current(engine) == head()
    assert head() >= "0002"
    assert is_up_to_date(engine)
    inspector = inspect(engine)
    assert {"audit_event", "alembic_version"} <= set(inspector.get_table_names())
    assert len(_triggers(engine)) == 2


def test_upgrade_from_empty_to_head(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current(engine) is None
        assert not is_up_to_date(engine)
        upgrade(engine)
        _schema_is_head(engine)
    finally:
        engine.dispose()


def test_upgrade_accepts_a_url(db_url: str) -> None:
    upgrade(db_url)
    assert current(db_url) == head()


def test_upgrading_twice_is_a_no_op(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        record(session, actor="system", action="test.before", target="x")
    upgrade(engine)
    upgrade(engine)
    _schema_is_head(engine)
    with Session(engine) as session:
        assert session.query(AuditEvent).count() == 1


def test_downgrade_to_base_and_back(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert current(engine) is None
    assert "audit_event" not in inspect(engine).get_table_names()
    upgrade(engine)
    _schema_is_head(engine)


# Each process imports everything, says it is ready, then waits for "go": the two upgrades
# then start within milliseconds of each other instead of an interpreter start-up apart.
_UPGRADE_WHEN_TOLD = """
import sys, time
from pathlib import Path
from bot.db import upgrade
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
upgrade(url)
"""


def test_concurrent_upgrades_from_two_processes(db_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE_WHEN_TOLD, db_url, str(flag), str(go)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 30
        while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
            time.sleep(0.005)
        go.touch()
        errors = [p.communicate(timeout=60)[1] for p in processes]
    finally:
        for process in processes:
            process.kill()
    assert [p.returncode for p in processes] == [0, 0], errors
    engine = make_engine(db_url)
    try:
        _schema_is_head(engine)
    finally:
        engine.dispose()


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
