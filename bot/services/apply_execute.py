"""Writing a plan's keys to XAPI, key by key, and recording what XAPI really shows afterwards.

Every planned key ends at its target, untouched, or at someone else's value
(:mod:`bot.domain.outcomes`), and the stored outcome says which:

* A key whose live value is neither the plan's ``before`` nor the target belongs to someone
  else (a colleague's edit during a long apply): it is left alone and named in the outcome.
  An add that meets ``MAP_DUPLICATE_KEY`` reads the key instead of overwriting it.
* Replacing a present value is remove + add. An add that fails after its remove is tried
  again, and if it still fails the old value is put back, so a failure never leaves a key
  absent that the approver saw set.
* A write whose answer was lost may have run, or may still run. It is never sent again
  blind: the interface is set aside and, once the other writes are done, watched until it
  shows the write or the settle time passes (:func:`settle`). Only then is it recorded —
  recorded equals real. What cannot be read back (the pool went away) is not recorded at
  all; the request stays ``applying`` and recovery reads it later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from bot.db.models import ChangeRequest
from bot.domain.approvals import State
from bot.domain.changes import InterfacePlan
from bot.domain.outcomes import KeyState, explain, judge, judge_key, status_of
from bot.render import changes as render
from bot.services.apply_results import Collector, Outcome
from bot.xen.errors import XapiError, XapiUnavailable, XenError
from bot.xen.gateway import PoolGateway

if TYPE_CHECKING:
    from bot.services.apply import ApplyService

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.2, 1.0)  # a failed add is tried this many more times, after these pauses
SETTLE_POLL_SECONDS = 0.5


class Uncertain(Exception):
    """A write's answer was lost: it may have landed, or may still land. Look, do not re-send.

    ``key`` is the key whose write was lost (None when only the read-back failed).
    ``in_flight`` is False when nothing can still land (XAPI refused to put a removed key
    back): then there is nothing to wait for, only a key to finish."""

    def __init__(self, key: str | None, reason: str, *, in_flight: bool = True) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason
        self.in_flight = in_flight


GONE = "the interface no longer exists (HANDLE_INVALID)"


def apply_interfaces(
    service: ApplyService,
    request: ChangeRequest,
    interfaces: Iterable[InterfacePlan],
    *,
    resumed: bool,
    live: Mapping[str, Mapping[str, str]] | None = None,
) -> State | None:
    """Write every interface (``live``: other_config by uuid, when the caller has read it already)."""
    items = list(interfaces)
    gateway = service.gateways.get(request.pool)
    collector = Collector(service, request, total=len(items))
    service._progress(request, 0, len(items))
    uncertain: list[tuple[InterfacePlan, Uncertain]] = []
    lock = threading.Lock()

    def one(item: InterfacePlan) -> None:
        if not collector.may_write():
            return
        try:
            collector.add(apply_one(gateway, item, None if live is None else live.get(item.uuid)))
        except Uncertain as exc:
            with lock:
                uncertain.append((item, exc))

    try:
        gateway.map(one, items)
        if uncertain and not collector.lost:
            settled, unread = settle(gateway, uncertain, service.settle_seconds(gateway))
            for outcome in settled:
                collector.add(outcome)
            if unread:
                collector.left += unread
                service.post_in_thread(request, render.left_unread(request, unread))
    finally:
        collector.close()
    if collector.lost:
        return None
    if collector.unstored or collector.left:
        # Closing now would count only what was stored and hide the rest from recover().
        log.warning(
            "change #%s stays applying: %d results to record and %d interfaces to write or read back are "
            "left to recovery", request.id, collector.unstored, collector.left,
        )
        return None
    return service._finish(request, resumed)


def apply_one(
    gateway: PoolGateway,
    item: InterfacePlan,
    live: Mapping[str, str] | None = None,
    *,
    skip: frozenset[str] = frozenset(),
    notes: Mapping[str, str] | None = None,
) -> Outcome:
    """Write the keys of one interface that are xenbot's to write; raises :class:`Uncertain`.

    ``live`` is the interface's current map when known. Without it, keys that were absent
    need no read (an add that finds the key answers MAP_DUPLICATE_KEY), but a present value
    is read first: removing it blind would throw away a colleague's newer value. ``skip``
    names keys not to write (a lost write that has not landed), explained by ``notes``.
    A value changed by someone else *after* xenbot's write is theirs to explain; the record
    says what xenbot's write left."""
    before, target = item.previous(), item.expected()
    failures = dict(notes or {})
    try:
        if live is None and any(before[k] is not None and target[k] != before[k] for k in target):
            live = _read(gateway, item)
        current: dict[str, str | None] = dict(before) if live is None else {k: live.get(k) for k in target}
        for key_name, value in target.items():
            state = judge_key(before[key_name], value, current[key_name])
            if state in (KeyState.TARGET, KeyState.FOREIGN) or key_name in skip:
                continue
            try:
                current[key_name] = _write_key(gateway, item, key_name, value, current[key_name])
            except XapiError as exc:
                if exc.code == "HANDLE_INVALID":
                    raise
                failures[key_name] = exc.short  # XAPI refused: the key is where it was
    except XapiError as exc:
        if exc.code != "HANDLE_INVALID":
            raise Uncertain(None, f"could not read back: {exc.short}") from None
        return Outcome(item.uuid, item.label, item.kind, "failed", before, None, GONE, item.activation)
    # No read-back: every key's value is known here. A write XAPI answered landed; one it refused
    # did not; a duplicate was read; a lost answer raised Uncertain (and is read in settle()).
    midway = [k for k, state in judge(before, target, current).items() if state is KeyState.MIDWAY]
    if midway:  # a re-add of a key found midway was refused: finish it later, never record it so
        reason = f"{midway[0]} is absent midway: {failures.get(midway[0], 'not re-added')}"
        raise Uncertain(midway[0], reason, in_flight=False)
    return outcome_from(item, current, failures)


def outcome_from(
    item: InterfacePlan, live: Mapping[str, str | None], notes: Mapping[str, str] | None = None
) -> Outcome:
    """The outcome of an interface from its live map; midway keys must be finished before."""
    before, target = item.previous(), item.expected()
    after = {k: live.get(k) for k in target}
    status = status_of(judge(before, target, after))
    error = explain(before, target, after, notes)
    return Outcome(item.uuid, item.label, item.kind, status, before, after, error, item.activation)


def _write_key(
    gateway: PoolGateway, item: InterfacePlan, key_name: str, value: str | None, present: str | None
) -> str | None:
    """Move one key from ``present`` (its old value, or absent midway) to ``value``; returns the new live value.

    Raises XapiError when XAPI refused, with the key back at ``present`` (or left for the
    caller to report), and :class:`Uncertain` when an answer was lost."""
    if value is None:
        _lost_is_uncertain(lambda: gateway.remove_key(item.kind, item.ref, key_name), "remove", key_name)
        return None
    if present is not None:
        _lost_is_uncertain(lambda: gateway.remove_key(item.kind, item.ref, key_name), "remove", key_name)
    try:
        return _add(gateway, item, key_name, value)
    except XapiError:
        if present is None:
            raise
        # Removed but not re-added: put the approver's old value back rather than leave the key absent.
        try:
            _add(gateway, item, key_name, present)
        except XapiError as again:
            log.error("%s %s: %s could be neither set nor restored (%s)", item.kind, item.label, key_name, again)
            raise Uncertain(key_name, f"{key_name} left absent midway: {again.short}", in_flight=False) from None
        raise


def _add(gateway: PoolGateway, item: InterfacePlan, key_name: str, value: str) -> str | None:
    """Add with bounded retries; a duplicate key is read, never overwritten (it may be a colleague's)."""
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            _lost_is_uncertain(lambda: gateway.add_key(item.kind, item.ref, key_name, value), "add", key_name)
            return value
        except XapiError as exc:
            if exc.code == "MAP_DUPLICATE_KEY":
                return _read(gateway, item).get(key_name)
            if exc.code == "HANDLE_INVALID" or attempt == len(RETRY_DELAYS):
                raise
            time.sleep(RETRY_DELAYS[attempt])
    raise AssertionError("unreachable")


def _lost_is_uncertain(write: Callable[[], None], verb: str, key_name: str) -> None:
    """Run a write; a lost answer becomes :class:`Uncertain`, a refused connection is retried once."""
    for attempt in (1, 2):
        try:
            write()
            return
        except XapiUnavailable as exc:
            if exc.unsent and attempt == 1:
                time.sleep(RETRY_DELAYS[0])
                continue
            raise Uncertain(key_name, f"{verb} of {key_name}: {exc.reason}") from None


def _read(gateway: PoolGateway, item: InterfacePlan) -> dict[str, str]:
    try:
        return gateway.other_config(item.kind, item.ref)
    except XapiUnavailable as exc:
        raise Uncertain(None, f"could not read back: {exc.reason}") from None


def settle(
    gateway: PoolGateway, uncertain: list[tuple[InterfacePlan, Uncertain]], seconds: float
) -> tuple[list[Outcome], int]:
    """Watch interfaces whose write answers were lost until each shows its write (or time runs out).

    A lost write is never re-sent blind: it may still land, and a late remove would undo a
    re-sent add. Once the lost key shows where it is (or the settle time passed), the
    interface's other keys are finished from its live map; a key found midway was certainly
    removed by xenbot, so it is re-added (a late add then meets MAP_DUPLICATE_KEY, harmlessly).
    Returns the outcomes, and how many interfaces could not be read (left to recovery)."""
    deadline = time.monotonic() + seconds
    waiting = {item.uuid: (item, lost) for item, lost in uncertain}
    done: list[Outcome] = []
    while waiting:
        for uuid, (item, lost) in list(waiting.items()):
            try:
                live = gateway.other_config(item.kind, item.ref)
            except XenError:
                continue  # the pool may answer again before the deadline
            states = judge(item.previous(), item.expected(), live)
            lost_state = states.get(lost.key) if lost.key else None
            waiting_for_it = lost.in_flight and lost_state in (KeyState.UNTOUCHED, KeyState.MIDWAY)
            if waiting_for_it and time.monotonic() < deadline:
                continue  # the lost write may still land
            # Past the deadline an untouched key stays as it is (never re-sent blind); a midway one
            # was certainly removed by xenbot and is re-added.
            skip = frozenset({lost.key}) if lost.key and lost_state is KeyState.UNTOUCHED else frozenset()
            notes = {k: f"answer lost ({lost.reason}), not landed after {seconds:.0f} s" for k in skip}
            try:
                done.append(apply_one(gateway, item, live, skip=skip, notes=notes))
            except Uncertain as again:
                waiting[uuid] = (item, again)
                continue
            del waiting[uuid]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(SETTLE_POLL_SECONDS)
    for item, lost in waiting.values():
        log.warning("%s %s: %s; left to recovery", item.kind, item.label, lost.reason)
    return done, len(waiting)
