"""One long-poll per pool on ``event.from``, so policies see new and edited interfaces in seconds.

Only one replica watches a pool: the holder of its lease row, renewed on every
loop and taken over when it lapses. The event token lives in memory; after any
gap (start, ``EVENTS_LOST``, a lost session, a new master, an unreachable pool)
the watcher takes a fresh token and re-scans the whole pool, and the
``drift_report`` table keeps the re-scan from reporting the same drift twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import WatcherLease
from bot.services.outside_activation import OutsideActivations
from bot.services.policies import PolicyService
from bot.xen.errors import XapiError, XenError
from bot.xen.gateway import PoolGateway

log = logging.getLogger(__name__)

CLASSES = ["VIF", "PIF", "VM", "host"]  # host: agent_start_time shows a toolstack restart
GAP_ERRORS = frozenset({"EVENTS_LOST", "EVENT_FROM_TOKEN_PARSE_FAILURE", "SESSION_NOT_REGISTERED"})


class Lease:
    """A row per pool: (holder, expires_at). Compare-and-set keeps it to one holder."""

    def __init__(self, sessions: sessionmaker[Session], holder: str, clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.holder = holder
        self.clock = clock

    def hold(self, pool: str, ttl: timedelta) -> bool:
        now = self.clock()
        with self.sessions.begin() as session:
            renewed = session.execute(
                update(WatcherLease)
                .where(
                    WatcherLease.pool == pool,
                    (WatcherLease.holder == self.holder) | (WatcherLease.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + ttl)
            )
            if renewed.rowcount == 1:  # type: ignore[attr-defined]
                return True
        try:
            with self.sessions.begin() as session:
                session.execute(insert(WatcherLease).values(pool=pool, holder=self.holder, expires_at=now + ttl))
            return True
        except IntegrityError:
            return False

    def release(self, pool: str) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(WatcherLease)
                .where(WatcherLease.pool == pool, WatcherLease.holder == self.holder)
                .values(expires_at=self.clock() - timedelta(seconds=1))
            )


@dataclass
class _Burst:
    """Events gathered until the pool goes quiet for a moment: one evaluation, one message."""

    vifs: set[str] = field(default_factory=set)
    pifs: set[str] = field(default_factory=set)
    vms: set[str] = field(default_factory=set)
    new_vif_refs: set[str] = field(default_factory=set)
    new_vm_refs: set[str] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.vifs or self.pifs or self.vms)


class PoolWatcher:
    def __init__(
        self,
        gateway: PoolGateway,
        policies: PolicyService,
        lease: Lease,
        *,
        poll_seconds: float = 25.0,
        lease_ttl: timedelta = timedelta(seconds=60),
        quiet_seconds: float = 1.0,
        max_burst_seconds: float = 5.0,
    ) -> None:
        self.gateway = gateway
        self.policies = policies
        self.lease = lease
        self.poll_seconds = poll_seconds
        self.lease_ttl = lease_ttl
        self.quiet_seconds = quiet_seconds
        self.max_burst_seconds = max_burst_seconds
        self.token = ""
        self.scans = 0  # full re-scans done (for tests and logs)
        self._stop = threading.Event()
        self._rescan = threading.Event()
        self._waiting = threading.Event()  # set while blocked in the long-poll, doing nothing else
        self._thread: threading.Thread | None = None
        self.outside = OutsideActivations(policies.sessions, gateway.name)  # migrations, toolstack restarts

    def request_rescan(self) -> None:
        """Ask for a full re-scan at the next iteration (as after a gap)."""
        self._rescan.set()

    @property
    def pool(self) -> str:
        return self.gateway.name

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.pool}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop without waiting out the long-poll (up to ``poll_seconds``, which made every restart
        slow): a thread blocked there does nothing after it returns; one that is evaluating a
        burst is let finish before the lease is released."""
        self._stop.set()
        if self._thread is not None:
            deadline = time.monotonic() + self.poll_seconds + 10
            while self._thread.is_alive() and time.monotonic() < deadline:
                self._thread.join(timeout=0.1)
                if self._waiting.is_set():
                    break  # it is daemonic, and acts on nothing once the poll returns
        try:
            self.lease.release(self.pool)
        except Exception:  # noqa: BLE001 - best effort; the lease lapses on its own
            log.debug("could not release the lease of %s", self.pool)

    def run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                if not self.lease.hold(self.pool, self.lease_ttl):
                    self.token = ""  # someone else watches; if we get it later, start from a full scan
                    self._stop.wait(min(self.lease_ttl.total_seconds() / 3, 10.0))
                    continue
                self.step()
                backoff = 1.0
            except XenError as exc:
                if self._stop.is_set():
                    break  # the poll in flight at shutdown failed because the gateway was closed
                log.warning("watcher %s: %s; re-scanning after %.0f s", self.pool, exc, backoff)
                self.token = ""
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:
                log.exception("watcher %s failed; re-scanning", self.pool)
                self.token = ""
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def step(self) -> None:
        """One iteration: a full scan after a gap, or one long-poll and its burst."""
        if not self.token or self._rescan.is_set():
            self._rescan.clear()
            self.rescan()
            return
        self._waiting.set()
        try:
            result = self._poll(self.token, self.poll_seconds)
        except XapiError as exc:
            if exc.code in GAP_ERRORS:
                log.info("watcher %s: %s; re-scanning", self.pool, exc.code)
                self.token = ""
                return
            raise
        finally:
            self._waiting.clear()
        if self._stop.is_set():
            return
        burst = _Burst()
        self._absorb(burst, result)
        if burst.empty():
            self.outside.flush(self.gateway.inventory)
            return
        deadline = time.monotonic() + self.max_burst_seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            more = self._poll(self.token, self.quiet_seconds)
            if not more["events"]:
                break
            self._absorb(burst, more)
        self._evaluate(burst)

    def rescan(self) -> None:
        """Take a token first, then read everything: nothing between the two can be missed."""
        self.token = self.gateway.event_token()  # not event.from(CLASSES, ""): that dumps every VM
        inventory = self.gateway.inventory()
        self.outside.prime(inventory)
        self.policies.on_changes(self.pool, inventory, affected=None)
        self.scans += 1

    def _poll(self, token: str, timeout: float) -> dict[str, Any]:
        result = self.gateway.call("event.from", CLASSES, token, float(timeout))
        return dict(result)

    def _absorb(self, burst: _Burst, result: dict[str, Any]) -> None:
        self.token = str(result["token"])
        for event in result.get("events", []):
            self.outside.see(event)
            cls = str(event.get("class", "")).lower()
            ref = str(event.get("ref", ""))
            operation = event.get("operation")
            if operation == "del":
                continue
            if cls == "vif":
                burst.vifs.add(ref)
                if operation == "add":
                    burst.new_vif_refs.add(ref)
            elif cls == "pif":
                burst.pifs.add(ref)
            elif cls == "vm":
                burst.vms.add(ref)
                if operation == "add":
                    burst.new_vm_refs.add(ref)

    def _evaluate(self, burst: _Burst) -> None:
        """Judge a burst against the gateway's inventory, the same one commands read: patched with
        the records that changed (bot/xen/patch.py), so a burst costs what it touched."""
        self.outside.flush(self.gateway.inventory)
        inventory = self.gateway.inventory()
        affected: set[str] = set()
        new: set[str] = set()
        for ref in burst.vifs:
            vif = inventory.vifs.get(ref)
            if vif is not None:
                affected.add(vif.uuid)
                if ref in burst.new_vif_refs:
                    new.add(vif.uuid)
        for ref in burst.pifs:
            pif = inventory.pifs.get(ref)
            if pif is not None:
                affected.add(pif.uuid)
        for ref in burst.vms:  # renamed, retagged, moved, or new with VIFs created alongside
            vm = inventory.vms.get(ref)
            if vm is not None:
                for vif in inventory.vifs_of(vm):
                    affected.add(vif.uuid)
                    if ref in burst.new_vm_refs:
                        new.add(vif.uuid)
        if affected:
            self.policies.on_changes(self.pool, inventory, affected, new, burst.new_vm_refs)


class Watchers:
    """A watcher per configured pool, all sharing one lease holder identity."""

    def __init__(self, gateways: Any, policies: PolicyService, lease: Lease, **options: Any) -> None:
        self.watchers = [PoolWatcher(g, policies, lease, **options) for g in gateways]

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher._stop.set()
        for watcher in self.watchers:
            watcher.stop()
