"""Database fixtures, imported by ``tests/conftest.py`` (``from tests.conftest_db import *``).

``db_url`` runs each test that uses it against a fresh SQLite file, and also against a fresh
PostgreSQL database when ``XENBOT_TEST_POSTGRES_URL`` names a server where we may create
databases (e.g. ``postgresql://root@127.0.0.1:5432/test``). Without that variable PostgreSQL is
never contacted. Select or skip the PostgreSQL runs with ``-m postgres`` / ``-m "not postgres"``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.db import make_engine, upgrade
from bot.db import session_factory as _session_factory

__all__ = ["db_url", "engine", "session_factory"]

POSTGRES_ENV = "XENBOT_TEST_POSTGRES_URL"


def _backends() -> list[object]:
    params: list[object] = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get(POSTGRES_ENV):
        params.append(pytest.param("postgres", id="postgres", marks=pytest.mark.postgres))
    return params


def _server_url() -> URL:
    url = make_url(os.environ[POSTGRES_ENV])
    return url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database (no schema), private to this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'xenbot.db'}"
        return
    server = _server_url()
    name = f"xenbot_t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` with the schema upgraded to head."""
    eng = make_engine(db_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """``bot.db.session_factory(engine)``: open one session per use case, as the bot does."""
    return _session_factory(engine)
