"""The slow half of every Slack interaction runs here, never where the ack is sent.

If acks waited behind work (as with Bolt's lazy listeners, which share one
executor), a burst of slow commands could keep acks past Slack's three seconds.
So listeners ack where the request arrived (the HTTP event loop, or Socket Mode's
listener thread) and hand the work to this separate, bounded pool. On shutdown it finishes what was acked (for a while)
instead of dropping answers people are waiting for.

Commands and clicks have workers of their own, which alerts never use: an alert costs a
Slack post or two, and when Slack answered ``chat.postMessage`` after a second, a flood
of 1,000 alerts on one shared queue held ``/xen vms`` for 105 s and approvals behind it.
Alerts wait in a queue bounded per channel; what does not fit is counted and handed to a
summariser (one message for the lot) instead of queueing without end. A command or click
still waiting for a worker after ``delay_notice_seconds`` gets ``on_delay`` called once,
so the person hears that the answer is coming.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from bot.settings import ServingSettings

log = logging.getLogger(__name__)

Summariser = Callable[[str, list[Any]], None]


@dataclass
class _Waiting:
    due: float
    submitted: float
    on_delay: Callable[[float], None]
    started: threading.Event = field(default_factory=threading.Event)


class WorkPool:
    # Few workers on purpose: the work is mostly CPU (XML-RPC parsing) under one GIL, and every
    # busy thread slows the ack threads' turns; more workers would only queue inside the GIL.
    def __init__(
        self,
        workers: int = 6,
        *,
        alert_workers: int = 2,
        alert_queue_per_channel: int = 50,
        delay_notice_seconds: float = 3.0,
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xenbot-work")
        self._alerts = ThreadPoolExecutor(max_workers=alert_workers, thread_name_prefix="xenbot-alerts")
        self._notices = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xenbot-notice")
        self._alert_bound = alert_queue_per_channel
        self._notice_after = delay_notice_seconds
        self._lock = threading.Lock()
        self._running: set[Future[Any]] = set()
        self._alerts_queued: dict[str, int] = {}
        self._overflow: dict[str, list[Any]] = {}
        self._waiting: deque[_Waiting] = deque()
        self._watch = threading.Condition(self._lock)
        self._stopped = False
        threading.Thread(target=self._watch_delays, name="xenbot-work-delays", daemon=True).start()

    @classmethod
    def from_settings(cls, serving: ServingSettings) -> WorkPool:
        return cls(
            serving.workers,
            alert_workers=serving.alert_workers,
            alert_queue_per_channel=serving.alert_queue_per_channel,
            delay_notice_seconds=serving.delay_notice_seconds,
        )

    def submit(
        self, fn: Callable[..., Any], *args: Any, on_delay: Callable[[float], None] | None = None
    ) -> Future[Any]:
        """A command or click; ``on_delay(seconds_waited)`` is called once if no worker took it in time."""
        if on_delay is None:
            return self._track(self._executor.submit(fn, *args))
        now = time.monotonic()
        waiting = _Waiting(now + self._notice_after, now, on_delay)

        def run() -> Any:
            waiting.started.set()
            return fn(*args)

        future = self._track(self._executor.submit(run))
        with self._watch:
            self._waiting.append(waiting)  # deadlines grow with time: the deque stays in order
            self._watch.notify()
        return future

    def submit_alert(
        self, channel: str, fn: Callable[..., Any], *args: Any, item: Any, summarise: Summariser
    ) -> Future[Any] | None:
        """An alert-channel message, unless ``channel`` already has its fill waiting: then ``item``
        is kept for ``summarise(channel, items)``, queued once behind the alerts already waiting."""
        with self._lock:
            queued = self._alerts_queued.get(channel, 0)
            if queued >= self._alert_bound:
                overflow = self._overflow.setdefault(channel, [])
                overflow.append(item)
                if len(overflow) > 1:
                    return None  # a summary is queued already and will take this one too
                summary_due = True
            else:
                self._alerts_queued[channel] = queued + 1
                summary_due = False
        if summary_due:
            log.warning("alert channel %s has %d messages waiting; summarising the rest", channel, queued)
            return self._track(self._alerts.submit(self._summarise, channel, summarise))

        def run() -> Any:
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._alerts_queued[channel] -= 1

        return self._track(self._alerts.submit(run))

    def _summarise(self, channel: str, summarise: Summariser) -> None:
        with self._lock:
            items = self._overflow.pop(channel, [])
        if items:
            summarise(channel, items)

    def shutdown(self, grace: float = 10.0) -> int:
        """Take no more work, finish what was acked for up to ``grace`` seconds, drop the rest.

        Returns how many acked requests were dropped unanswered (logged)."""
        executors = (self._executor, self._alerts)
        for executor in executors:
            executor.shutdown(wait=False)
        with self._lock:
            pending = set(self._running)
            self._stopped = True
            self._watch.notify()
        _done, left = wait(pending, timeout=grace)
        for executor in (*executors, self._notices):
            executor.shutdown(wait=False, cancel_futures=True)
        if left:
            log.warning("shutting down with %d acked request(s) unanswered", len(left))
        return len(left)

    def _track(self, future: Future[Any]) -> Future[Any]:
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)
        _log_failure(future)

    def _watch_delays(self) -> None:
        """One thread for every delay notice: wakes at the oldest waiting job's deadline."""
        while True:
            with self._watch:
                while not self._stopped and (
                    not self._waiting or self._waiting[0].due > time.monotonic()
                ):
                    self._watch.wait(self._waiting[0].due - time.monotonic() if self._waiting else None)
                if self._stopped:
                    return
                waiting = self._waiting.popleft()
            if not waiting.started.is_set():
                try:
                    self._notices.submit(waiting.on_delay, time.monotonic() - waiting.submitted)
                except RuntimeError:  # shutting down
                    return


def _log_failure(future: Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("background work failed", exc_info=exc)
