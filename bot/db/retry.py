"""Riding out a database outage instead of dropping what we were about to record.

A PostgreSQL restart, a failover or a network cut kills every pooled connection:
the statement in flight fails with ``OperationalError`` and new connections are
refused until the server is back. ``pool_pre_ping`` (``bot.db.engine``) replaces
dead connections once it is; this module makes the writer wait for that moment.

Only use it around a transaction that is safe to run twice: the commit may have
reached the server just before the connection died, so a retry must find its own
earlier work and not repeat it (``ApplyService._store`` checks what is stored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE = 0.2
LONGEST_PAUSE = 5.0


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures (server down, connection reset, lock timeout): worth waiting out.

    Integrity and programming errors are not: running them again gives the same answer."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def patiently(
    run: Callable[[], T],
    *,
    patience: float,
    on_outage: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``run``; while it fails transiently, retry with growing pauses for up to ``patience`` seconds.

    ``on_outage`` is called once, at the first failure, so the caller can tell people
    that what they are waiting for is delayed, not lost. The last error is raised when
    patience runs out.
    """
    deadline = clock() + patience
    pause = FIRST_PAUSE
    told = False
    while True:
        try:
            return run()
        except Exception as exc:
            if not is_transient(exc) or clock() + pause > deadline:
                raise
            if not told:
                told = True
                log.warning("database unreachable, retrying for up to %.0f s: %s", patience, _first_line(exc))
                if on_outage is not None:
                    on_outage(exc)
            sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
