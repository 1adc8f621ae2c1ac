"""The slow half of every Slack interaction runs here, never where the ack is sent.

If acks waited behind work (as with Bolt's lazy listeners, which share one
executor), a burst of slow commands could keep acks past Slack's three seconds.
So listeners ack where the request arrived (the HTTP event loop, or Socket Mode's
listener thread) and hand the work to this separate, bounded pool. On shutdown it finishes what was acked (for a while)
instead of dropping answers people are waiting for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

log = logging.getLogger(__name__)


class WorkPool:
    # Few workers on purpose: the work is mostly CPU (XML-RPC parsing) under one GIL, and every
    # busy thread slows the ack threads' turns; more workers would only queue inside the GIL.
    def __init__(self, workers: int = 6) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xenbot-work")
        self._lock = threading.Lock()
        self._running: set[Future[Any]] = set()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._executor.submit(fn, *args)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._done)
        return future

    def shutdown(self, grace: float = 10.0) -> int:
        """Take no more work, finish what was acked for up to ``grace`` seconds, drop the rest.

        Returns how many acked requests were dropped unanswered (logged)."""
        self._executor.shutdown(wait=False)
        with self._lock:
            pending = set(self._running)
        _done, left = wait(pending, timeout=grace)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if left:
            log.warning("shutting down with %d acked request(s) unanswered", len(left))
        return len(left)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)
        _log_failure(future)


def _log_failure(future: Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("background work failed", exc_info=exc)
