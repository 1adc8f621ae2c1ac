"""Schema migrations, run from code: at start-up by each replica, or by ``xenbot db upgrade``.

The Alembic scripts ship inside the package (``bot/db/migrations``) and the Alembic configuration
is built here, so an installed wheel can migrate its database with no ``alembic.ini`` on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from bot.db.engine import deferred_engine, make_engine

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while one replica migrates ("xenbot" + 2).
MIGRATION_LOCK_KEY: Final = 0x78656E626F740002


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration for xenbot's migrations.

    Also the way to write a new migration without an ini file::

        from alembic import command
        command.revision(alembic_config("sqlite:///dev.db"), "add foo", autogenerate=True, rev_id="0002")
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision this version of xenbot knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:  # pragma: no cover - the package always ships 0001
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return revision


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already.

    Safe to call from several replicas starting at once: one migrates and the others wait for it,
    then find nothing to do. The upgrade is one transaction, so a failure leaves the old schema.
    """
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with _migration_lock(engine), engine.begin() as connection:
            # On SQLite this BEGIN is IMMEDIATE (bot.db.engine): the second process blocks here,
            # before reading alembic_version, until the first has committed.
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def current(engine_or_url: Engine | str) -> str | None:
    """The revision the database is at, or ``None`` for a database never migrated."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        # Read-only: on SQLite, do not queue behind (or block) writers for the write lock.
        with deferred_engine(engine).connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def is_up_to_date(engine_or_url: Engine | str) -> bool:
    """Whether the database is at :func:`head` (a readiness check before serving)."""
    return current(engine_or_url) == head()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock, on its own connection, around an upgrade.

    A session lock (not a transaction one) on a dedicated autocommit connection, so it is held
    independently of the migration's transaction and released even if that one fails. On SQLite
    the database file's write lock, taken by BEGIN IMMEDIATE, does the same job.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as lock:
        lock.execution_options(isolation_level="AUTOCOMMIT")
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            yield
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
