"""Engines and sessions, configured so that SQLite and PostgreSQL behave alike where it matters.

SQLite is the single-host default and PostgreSQL the choice for several replicas. The code above
this module assumes three things from both: a transaction that writes holds the write lock from
its first statement (so "read the latest row, then append after it" cannot interleave with another
writer), foreign keys are enforced, and a busy database makes us wait rather than fail at once.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.db.audit import AUDIT_KEY_INFO

# How long a SQLite connection waits for another writer before "database is locked". Long, because
# the writers are short transactions of a chat bot and failing a user's command is worse than waiting.
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

# Execution option naming the BEGIN flavour for SQLite transactions (see ``deferred_engine``).
SQLITE_BEGIN_OPTION: Final = "xenbot_sqlite_begin"
_BEGIN_STATEMENTS: Final = {"IMMEDIATE": "BEGIN IMMEDIATE", "DEFERRED": "BEGIN DEFERRED"}


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` (a ``sqlite:`` or ``postgresql[+psycopg]:`` URL).

    Extra keyword arguments go to :func:`sqlalchemy.create_engine` (tests use ``echo=True``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine, parsed.database)
        return engine
    if parsed.drivername == "postgresql":
        # Same normalisation as bot.settings, for URLs that did not come through it (tests, scripts).
        parsed = parsed.set(drivername="postgresql+psycopg")
    # A replica may sit idle for hours; the server or a NAT box may have dropped its connections.
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


NO_DATABASE: Final = "no database yet: run `xenbot db upgrade` or start `xenbot serve`"


def database_missing(url: str) -> bool:
    """Whether ``url`` names a SQLite file that does not exist yet.

    Read-only commands (``status``, ``db current``, ``audit verify|tail``) check this first and
    say :data:`NO_DATABASE`: connecting would create an empty file (and its folder), which then
    looks like a database that is merely not migrated."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    return not Path(database).expanduser().exists()


def session_factory(engine: Engine, audit_key: SecretStr | None = None) -> sessionmaker[Session]:
    """The sessionmaker every use case opens its one transaction from.

    ``expire_on_commit=False`` because handlers format replies from the objects they just committed,
    and a lazy reload after commit would start a second, pointless transaction. ``audit_key``
    (``[audit] key_file``) travels in each session's ``info`` to ``bot.db.audit.record``, so the
    services that audit need not know about it.
    """
    info = {AUDIT_KEY_INFO: audit_key} if audit_key is not None else {}
    return sessionmaker(bind=engine, expire_on_commit=False, info=info)


def deferred_engine(engine: Engine) -> Engine:
    """A view of ``engine`` whose SQLite transactions start with ``BEGIN DEFERRED``.

    By default every SQLite transaction takes the write lock up front (``BEGIN IMMEDIATE``), which
    is what writers need but makes a long read-only scan (``xenbot audit verify``) block the bot's
    writes. Under WAL a deferred transaction reads a consistent snapshot without blocking anyone.
    Only use it for work that does not write: a deferred transaction that reads and then writes
    can fail with "database is locked" when another writer committed in between. The view shares
    the pool of ``engine``; on PostgreSQL it changes nothing.
    """
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})


def _create_parent_folder(database: str | None) -> None:
    """SQLite creates the file but not its folder; a fresh ``/var/lib/xenbot/`` should just work."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode = WAL``, waiting for a process that is doing the same.

    Two processes opening a fresh file at once (replicas starting together) both try to
    convert it; the loser gets "database is locked" at once, without the busy timeout:
    SQLite does not wait where waiting could deadlock. So we wait here, as long as
    busy_timeout would have."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine, database: str | None) -> None:
    """Take transaction control away from the sqlite3 module and give it to SQLAlchemy.

    Python < 3.12's sqlite3 ("legacy transaction control") only emits BEGIN before DML, so a SELECT
    that precedes an INSERT in "the same" transaction runs outside it, and DDL autocommits. This is
    the recipe of SQLAlchemy's SQLite documentation ("Enabling Non-Legacy SQLite Transactional
    Modes"): ``isolation_level = None`` on each DBAPI connection, and BEGIN emitted by us.
    """

    @event.listens_for(engine, "do_connect")
    def _before_connect(*_args: Any) -> None:
        # At the first connection, not when the engine is made: making an engine creates nothing.
        _create_parent_folder(database)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching a fresh file to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
            # WAL lets readers proceed while a writer commits. Persistent in the file; cheap to repeat.
            _switch_to_wal(cursor)
            # Off by default in SQLite, per connection, and cannot be changed inside a transaction.
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # The caller asked for no transaction; a BEGIN would never be committed.
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is not None and dbapi_connection.isolation_level is not None:
            # Returning from an AUTOCOMMIT checkout, the dialect resets the connection to the
            # sqlite3 default ("" = legacy control). Undo that; no transaction is open here, so
            # this cannot commit anything by accident.
            dbapi_connection.isolation_level = None
        # IMMEDIATE by default: the write lock is taken before the first read, so a transaction
        # that reads the latest audit row and appends after it cannot race another writer, and
        # a busy database is waited for (busy_timeout) instead of failing at the upgrade from a
        # read to a write lock (SQLITE_BUSY_SNAPSHOT, which no timeout retries).
        mode = options.get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(_BEGIN_STATEMENTS[mode])
