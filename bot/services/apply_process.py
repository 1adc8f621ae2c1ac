"""Running approved changes in child processes, so a pool-wide apply never slows an ack.

A pool-wide apply is thousands of XML-RPC calls, and the stdlib client parses each answer
in Python under the serve process's one GIL. Measured with ``bench_ack.py``, that alone
tripled ack latency while an apply ran. ``xenbot serve`` therefore hands each approved
request to one of ``apply_processes`` children, each with its own services built from the
same settings (database, pools, Slack messenger).

Nothing about exactly-once changes: the child claims the request in the database like any
replica would, and a child that dies mid-apply leaves a request whose heartbeat goes stale,
which the housekeeper resumes (``ApplyService.recover``).

Children ignore SIGINT/SIGTERM (the parent decides when they stop), so a serving process
killed outright (SIGKILL, the OOM killer) used to leave them running for good. Each child
watches the pipe multiprocessing keeps from its parent (``parent_process().sentinel``: it
reads as closed when the parent is gone, however it died); then the child starts no new
interface, lets the ones in flight finish and be stored, and exits. The request stays
``applying`` and the next replica's housekeeper (or this one's, restarted) resumes it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.services.messenger import Messenger
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.wiring import Services
    from bot.xen.gateway import PoolGateway

log = logging.getLogger(__name__)

MessengerFactory = Callable[[Settings], Messenger]
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # as in bot.metrics, which cannot be imported first
NICENESS = 10


def share_metrics() -> Path | None:
    """Let apply processes' metrics reach ``/metrics``: prometheus-client's multiprocess mode.

    Must run before ``prometheus_client`` is first imported (it picks its value store at
    import). Returns the folder it made, to remove at exit; None when the operator set one
    (they own it) or when it is too late."""
    if os.environ.get(MULTIPROCESS_ENV):
        return None
    if "prometheus_client" in sys.modules:
        log.warning("metrics of apply processes will not be exported: prometheus_client imported too early")
        return None
    folder = Path(tempfile.mkdtemp(prefix="xenbot-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder


class ApplyProcesses:
    def __init__(self, settings: Settings, messenger: MessengerFactory, processes: int) -> None:
        self._settings = settings
        self._messenger = messenger
        self._processes = processes
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def submit(self, request_id: int, actor: str) -> Future[str | None]:
        """Start applying ``request_id`` in a child; the future holds the final state's name."""
        outcome: Future[str | None] = Future()
        self._send(request_id, actor, outcome, retries=1)
        return outcome

    def recover(self, request_id: int, lease: timedelta) -> Future[str | None]:
        """Finish a stuck request in a child (``ApplyService.recover_one``), like an apply."""
        outcome: Future[str | None] = Future()
        self._send(request_id, "system", outcome, retries=1, lease=lease)
        return outcome

    def _send(
        self, request_id: int, actor: str, outcome: Future[str | None], retries: int, lease: timedelta | None = None
    ) -> None:
        work, args = (_execute, (request_id, actor)) if lease is None else (_recover, (request_id, lease))
        with self._lock:
            pool = self._pool
            try:
                job = pool.submit(work, *args)
            except BrokenProcessPool:
                pool = self._replace(pool)
                job = pool.submit(work, *args)

        def done(job: Future[str | None]) -> None:
            if job.cancelled():
                outcome.cancel()
                return
            exc = job.exception()
            if isinstance(exc, BrokenProcessPool) and retries:
                # A child was killed (OOM, an operator). Send the request to fresh children: if it
                # had not started it runs now; if it had, it is ``applying`` and execute() leaves it
                # to recover(), which resumes it once its heartbeat is stale.
                with self._lock:
                    self._replace(pool)
                self._send(request_id, actor, outcome, retries - 1, lease)
            elif exc is not None:
                log.error("apply of change #%s failed in its process", request_id, exc_info=exc)
                outcome.set_exception(exc)
            else:
                outcome.set_result(job.result())

        job.add_done_callback(done)

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A fresh pool in place of ``broken`` (unless someone replaced it already); call with the lock."""
        if self._pool is broken:
            log.warning("an apply process died; starting new ones")
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return self._pool

    def close(self) -> None:
        """Let running applies finish in their children; queued ones are picked up again by recover()."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        """A pool whose children are all starting already, in the background (imports and
        services: a second or more of CPU each), rather than when approvals arrive and the bot
        is busiest. The executor spawns a child for each job that finds none idle, so one no-op
        job per child does it."""
        pool = ProcessPoolExecutor(
            max_workers=self._processes,
            # spawn, not fork: the parent has threads (HTTP, housekeeping) and open connections.
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(self._settings, self._messenger),
        )
        for _ in range(self._processes):
            pool.submit(_ready)
        return pool


# -- in the child -------------------------------------------------------------------

_services: Services | None = None
_parent_gone = threading.Event()
_busy = threading.Lock()  # held while a job runs: the exit waits for it


def _watch_parent() -> None:
    """Wait for the serving process to be gone, hand the request over, and exit."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    parent.join()  # the parent's end of the pipe closed: it exited or was killed
    _parent_gone.set()
    log.warning("the serving process is gone: finishing the interfaces in flight, leaving the rest to "
                "recovery, then exiting")
    if _services is not None:
        # Collector.may_write reads this before every interface: none is started from now on.
        _services.apply.write_window = -1.0
    with _busy:
        logging.shutdown()
        os._exit(0)


def _start_child(settings: Settings, messenger: MessengerFactory) -> None:
    from bot import heap, logs
    from bot.wiring import build

    global _services
    # The parent decides when to stop: Ctrl-C in a terminal or a SIGTERM to the whole group must
    # not cut an apply in half; the pool's shutdown lets the current apply finish instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure(settings.log_level)
    try:
        # Background work: when the machine is busy, the serving process (acks, commands) goes first.
        os.nice(NICENESS)
    except OSError as exc:  # e.g. systemd's SystemCallFilter=~@resources
        log.info("apply process keeps normal priority: %s", exc)
    _services = build(settings, messenger=messenger(settings))
    threading.Thread(target=_watch_parent, name="xenbot-parent-watch", daemon=True).start()
    heap.settle()  # a pool-wide apply allocates fast; collections need not walk the imports
    _keep_warm(_services)


def _ready() -> bool:
    return _services is not None


def _execute(request_id: int, actor: str) -> str | None:
    assert _services is not None, "child not initialised"
    with _busy:
        if _parent_gone.is_set():
            return None  # still approved: recovery applies it
        state = _services.apply.execute(request_id, actor)
    return None if state is None else str(state)


def _recover(request_id: int, lease: timedelta) -> str | None:
    assert _services is not None, "child not initialised"
    with _busy:
        if _parent_gone.is_set():
            return None
        state = _services.apply.recover_one(request_id, lease)
    return None if state is None else str(state)


# -- pool copies kept warm ---------------------------------------------------------------

# How often a child catches its pool copies up with the event feed while it waits for work.
KEEP_WARM_SECONDS = 5.0


def _keep_warm(services: Services) -> None:
    """Read each pool now, in the background, and keep the copy current from the event feed.

    Otherwise the first approval a child gets pays the full read (0.78 s at 1,000 VMs, 3.9 s at
    5,000) and every later one the changes piled up since. Each round is one ``event.from`` per
    pool (``PoolGateway.inventory`` patches its copy with what changed): an idle pool costs one
    small call every ``KEEP_WARM_SECONDS``; a pool that is down is retried at the same pace."""

    def keep(gateway: PoolGateway) -> None:
        while True:
            try:
                gateway.inventory()
            except Exception as exc:  # noqa: BLE001 - an unreachable pool is read by the next apply instead
                log.debug("apply process: pool %s not read (%s)", gateway.name, exc)
            time.sleep(KEEP_WARM_SECONDS)

    for gateway in services.gateways:
        threading.Thread(target=keep, args=(gateway,), name=f"warm-{gateway.name}", daemon=True).start()
