"""Alembic environment for xenbot, run by :mod:`bot.db.migrate` (no alembic.ini involved).

``bot.db.migrate`` hands over a connection already inside a transaction (``config.attributes
["connection"]``), so the whole upgrade commits or rolls back as one: PostgreSQL has
transactional DDL, and on SQLite ``bot.db.make_engine`` emits BEGIN itself, which makes
SQLite's DDL transactional too. A URL (``sqlalchemy.url``) is accepted for the Alembic command
line and for offline ``--sql`` rendering.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bot.db.engine import make_engine
from bot.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite's ALTER TABLE cannot alter or drop most things; batch mode recreates the table.
        # Note that recreating audit_event drops its triggers: a batch migration of that table
        # must create them again (see 0001).
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url to render migrations as SQL")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("pass a connection in config.attributes['connection'] or set sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.begin() as own_connection:
            _configure(own_connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
