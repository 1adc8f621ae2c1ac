"""The slow half of every Slack interaction runs here, never on Bolt's listener executor.

Bolt runs ack functions on its listener executor; if the same executor also ran
the work (lazy listeners do), a burst of slow commands or a pool-wide apply
could keep acks waiting past Slack's three seconds. So listeners ack on Bolt's
executor and hand the work to this separate, bounded pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class WorkPool:
    # Few workers on purpose: the work is mostly CPU (XML-RPC parsing) under one GIL, and every
    # busy thread slows the ack threads' turns; more workers would only queue inside the GIL.
    def __init__(self, workers: int = 6) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xenbot-work")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._executor.submit(fn, *args)
        future.add_done_callback(_log_failure)
        return future

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("background work failed", exc_info=exc)
