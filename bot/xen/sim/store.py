"""The simulator's object database and its ``event.from`` feed.

Modelled on XAPI's in-memory database (XA ``ocaml/database``): every write bumps
one global *generation*; each row remembers the generation it was created and
last modified at, and deleted rows leave a tombstone. ``event.from`` does not
replay a log of writes — it asks "which rows changed since generation N?" and
reports each row once, with its *current* record (XA ``ocaml/xapi/xapi_event.ml``
``from_inner``). That is why the feed coalesces: three edits between two polls
arrive as one ``mod``; an object created and destroyed between polls never shows
up; a row created since the token is an ``add`` even if it was edited too. Clients
that assume one event per write break on a real pool, so the simulator keeps that
behaviour rather than a friendlier log.

One re-entrant lock guards everything (``Store.lock``); a condition on it wakes
long-polling ``event.from`` callers, who wait *without* holding the lock so they
never block other callers.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid as uuidlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.xen.sim import errors
from bot.xen.sim.errors import XapiError
from bot.xen.sim.schema import NULL_REF, ONE_TO_ONE, RELATIONS, SCHEMA, ClassSpec, Field, Kind, to_wire

# Each table remembers its recent deletions in a bounded queue: once it would reach 512 it is cut
# back to the newest 256 plus the new one. Older deletions are skipped without any error, and the
# queue lives in memory only, so a xapi restart forgets every deletion
# (XA ocaml/database/db_cache_types.ml Table.remove, upper/lower_length_deleted_queue).
DELETED_QUEUE_UPPER = 512
DELETED_QUEUE_LOWER = 256

# XAPI's own event.from leaves the per-event timestamp at "0.0"
# (XA ocaml/xapi/xapi_event.ml, from_inner: ts="0.0"); clients must not rely on it.
EVENT_TIMESTAMP = "0.0"
_TOKEN_RE = re.compile(r"^-?\d+$")


@dataclass(slots=True)
class Obj:
    """One row: its ref, class, field values and creation/modification generations."""

    ref: str
    cls: str
    fields: dict[str, Any]
    created: int
    modified: int


@dataclass(slots=True, frozen=True)
class Tombstone:
    """What is remembered of a destroyed row, so ``event.from`` can report ``del``."""

    ref: str
    cls: str
    created: int
    deleted: int


def format_token(generation: int) -> str:
    """XAPI's token format: two zero-padded decimals, generation and message id."""
    return f"{generation:020d},{0:020d}"


def parse_token(token: object) -> int:
    """Return the generation in an ``event.from`` token; ``""`` means "from scratch"."""
    if token == "":
        return 0
    if isinstance(token, str):
        parts = token.split(",")
        if len(parts) == 2 and all(_TOKEN_RE.match(p) for p in parts):
            return int(parts[0])
    raise XapiError(errors.EVENT_FROM_TOKEN_PARSE_FAILURE, [str(token)])


def _parse_subscriptions(classes: Iterable[str]) -> list[tuple[str, str | None]]:
    """``*`` = everything, ``vm`` = a class, ``vm/OpaqueRef:..`` = one object (case-insensitive class)."""
    subs: list[tuple[str, str | None]] = []
    for entry in classes:
        if entry == "*":
            subs.append(("*", None))
            continue
        cls, sep, ref = entry.partition("/")
        subs.append((cls.lower(), ref if sep else None))
    return subs


def _matches(subs: list[tuple[str, str | None]], cls: str, ref: str) -> bool:
    low = cls.lower()
    for sub_cls, sub_ref in subs:
        if sub_cls == "*":
            return True
        if sub_cls == low and (sub_ref is None or sub_ref == ref):
            return True
    return False


def coerce(fld: Field, value: Any) -> Any:
    """Lenient conversion for values given through the Python API or a fixture file."""
    kind = fld.kind
    if kind is Kind.INT:
        return int(value)
    if kind is Kind.FLOAT:
        return float(value)
    if kind is Kind.BOOL:
        return bool(value)
    if kind is Kind.MAP:
        return {str(k): _str(v) for k, v in dict(value or {}).items()}
    if kind is Kind.SET:
        return [str(v) for v in (value or [])]
    if kind is Kind.ENUM:
        text = str(value)
        if text not in fld.values:
            raise ValueError(f"{fld.name}: {text!r} is not one of {fld.values}")
        return text
    if kind is Kind.REF and value is None:
        return NULL_REF
    return str(value)


def _str(value: Any) -> str:
    # YAML turns `on`/`off` into booleans; a map value must stay the string XAPI stores.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Store:
    """Thread-safe object database with XAPI-style generations and tombstones."""

    def __init__(self, *, seed: int = 0, event_retention: int = DELETED_QUEUE_UPPER) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.event_batch_delay = 0.05  # XAPI sleeps 50 ms after a wake-up to batch events
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fixtures, not crypto
        self._objs: dict[str, Obj] = {}
        self._by_class: dict[str, dict[str, Obj]] = {name: {} for name in SCHEMA}
        self._by_uuid: dict[tuple[str, str], str] = {}
        self._generation = 0
        self._recent: OrderedDict[str, int] = OrderedDict()  # ref -> last change, oldest first
        self._tombstones: dict[str, deque[Tombstone]] = {name: deque() for name in SCHEMA}
        self._event_retention = event_retention  # the per-table upper bound (512 in XAPI)
        self._closed = False
        self._children: dict[str, list[tuple[str, str, str]]] = {}
        for child, fld, parent, pfld in RELATIONS:
            self._children.setdefault(child, []).append((fld, parent, pfld))
        self._one_to_one: dict[str, list[tuple[str, str, str]]] = {}
        for child, fld, parent, pfld in ONE_TO_ONE:
            self._one_to_one.setdefault(child, []).append((fld, parent, pfld))

    # ----------------------------------------------------------------- identity
    def new_uuid(self) -> str:
        """A version-4 UUID from the store's seeded RNG, so fixtures are reproducible."""
        with self.lock:
            return str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def new_ref(self) -> str:
        """A fresh ``OpaqueRef:<uuid4>``."""
        return "OpaqueRef:" + self.new_uuid()

    @property
    def generation(self) -> int:
        """The current database generation (bumped by every write)."""
        return self._generation

    # ------------------------------------------------------------------ reading
    def find(self, ref: str) -> Obj | None:
        """The row for ``ref`` or ``None``; no class check."""
        return self._objs.get(ref)

    def get(self, ref: object, cls: str) -> Obj:
        """The ``cls`` row for ``ref``, else ``HANDLE_INVALID [cls, ref]`` as XAPI raises it."""
        obj = self._objs.get(ref) if isinstance(ref, str) else None
        if obj is None or obj.cls != cls:
            raise XapiError(errors.HANDLE_INVALID, [cls, str(ref)])
        return obj

    def all(self, cls: str) -> list[Obj]:
        """Every live row of ``cls``, in creation order."""
        return list(self._by_class[cls].values())

    def by_uuid(self, cls: str, uuid: object) -> Obj:
        """The ``cls`` row with ``uuid``, else ``UUID_INVALID [cls, uuid]``."""
        ref = self._by_uuid.get((cls, uuid)) if isinstance(uuid, str) else None
        if ref is None:
            raise XapiError(errors.UUID_INVALID, [cls, str(uuid)])
        return self._objs[ref]

    def by_name_label(self, cls: str, label: str) -> list[Obj]:
        """Rows of ``cls`` whose ``name_label`` is exactly ``label`` (XAPI returns a set)."""
        return [o for o in self._by_class[cls].values() if o.fields.get("name_label") == label]

    def record(self, obj: Obj) -> dict[str, Any]:
        """The wire form of ``obj`` as ``get_record`` returns it."""
        spec = SCHEMA[obj.cls]
        return {name: to_wire(fld, obj.fields[name]) for name, fld in spec.fields.items()}

    def counts(self) -> dict[str, int]:
        """``valid_ref_counts``: live rows per (lower-cased) class, every class included."""
        return {SCHEMA[cls].event_name: len(rows) for cls, rows in self._by_class.items()}

    # ------------------------------------------------------------------ writing
    def create(self, cls: str, values: Mapping[str, Any] | None = None, *, ref: str | None = None) -> str:
        """Insert a row (defaults for missing fields) and emit its ``add`` event."""
        spec: ClassSpec = SCHEMA[cls]
        with self.lock:
            given = dict(values or {})
            unknown = set(given) - set(spec.fields)
            if unknown:
                raise ValueError(f"{cls} has no field(s) {sorted(unknown)}")
            fields: dict[str, Any] = {}
            for name, fld in spec.fields.items():
                fields[name] = coerce(fld, given[name]) if name in given else fld.default()
            if not fields["uuid"]:
                fields["uuid"] = self.new_uuid()
            ref = ref or self.new_ref()
            if ref in self._objs:
                raise ValueError(f"duplicate ref {ref}")
            self._generation += 1
            obj = Obj(ref, cls, fields, self._generation, self._generation)
            self._objs[ref] = obj
            self._by_class[cls][ref] = obj
            self._by_uuid[(cls, fields["uuid"])] = ref
            self._recent[ref] = obj.modified
            for fld_name, parent_cls, pfld in self._children.get(cls, []):
                self._link(parent_cls, fields[fld_name], pfld, ref)
            for fld_name, parent_cls, pfld in self._one_to_one.get(cls, []):
                self._set_single(parent_cls, fields[fld_name], pfld, ref)
            self.changed.notify_all()
            return ref

    def update(self, ref: str, values: Mapping[str, Any]) -> None:
        """Write fields of one row (one generation bump) and keep relations in sync."""
        with self.lock:
            obj = self._objs[ref]
            spec = SCHEMA[obj.cls]
            relations = {f: (p, pf) for f, p, pf in self._children.get(obj.cls, [])}
            singles = {f: (p, pf) for f, p, pf in self._one_to_one.get(obj.cls, [])}
            changed = False
            for name, value in values.items():
                fld = spec.fields[name]
                new = coerce(fld, value)
                old = obj.fields[name]
                if new == old:
                    continue
                obj.fields[name] = new
                changed = True
                if name in relations:
                    parent_cls, pfld = relations[name]
                    self._unlink(parent_cls, old, pfld, ref)
                    self._link(parent_cls, new, pfld, ref)
                if name in singles:
                    parent_cls, pfld = singles[name]
                    self._set_single(parent_cls, old, pfld, NULL_REF)
                    self._set_single(parent_cls, new, pfld, ref)
            if changed:
                self._touch(obj)
                self.changed.notify_all()

    def touch(self, ref: str) -> None:
        """Emit a ``mod`` event for ``ref`` without changing it."""
        with self.lock:
            self._touch(self._objs[ref])
            self.changed.notify_all()

    def destroy(self, ref: str) -> None:
        """Delete a row, leaving a tombstone for ``event.from``. Refs to it dangle, as in XAPI."""
        with self.lock:
            obj = self._objs.pop(ref)
            del self._by_class[obj.cls][ref]
            del self._by_uuid[(obj.cls, obj.fields["uuid"])]
            del self._recent[ref]
            for fld_name, parent_cls, pfld in self._children.get(obj.cls, []):
                self._unlink(parent_cls, obj.fields[fld_name], pfld, ref)
            for fld_name, parent_cls, pfld in self._one_to_one.get(obj.cls, []):
                self._set_single(parent_cls, obj.fields[fld_name], pfld, NULL_REF)
            self._generation += 1
            self._remember_deletion(Tombstone(ref, obj.cls, obj.created, self._generation))
            self.changed.notify_all()

    def _remember_deletion(self, tomb: Tombstone) -> None:
        """db_cache_types.ml ``Table.remove``: below the upper bound the deletion is added; at it,
        the queue is cut to the newest ``lower`` ones plus this one. Nobody is told."""
        queue = self._tombstones[tomb.cls]
        upper = self._event_retention
        lower = min(DELETED_QUEUE_LOWER, upper // 2)
        if len(queue) + 1 >= upper:
            while len(queue) > lower:
                queue.popleft()
        queue.append(tomb)

    # Map edits with XAPI's exact semantics (XA ocaml/database/db_cache_types.ml).
    def map_add(self, obj: Obj, field: str, key: str, value: str) -> None:
        """``add_to_<field>``: ``MAP_DUPLICATE_KEY`` if the key exists, even with the same value."""
        with self.lock:
            current: dict[str, str] = obj.fields[field]
            if key in current:
                raise XapiError(errors.MAP_DUPLICATE_KEY, [obj.cls, field, obj.ref, key])
            self.update(obj.ref, {field: {**current, key: value}})

    def map_remove(self, obj: Obj, field: str, key: str) -> None:
        """``remove_from_<field>``: removing an absent key is a silent no-op."""
        with self.lock:
            current: dict[str, str] = obj.fields[field]
            if key in current:
                self.update(obj.ref, {field: {k: v for k, v in current.items() if k != key}})

    def set_add(self, obj: Obj, field: str, value: str) -> None:
        """``add_<set>``: adding a present member is a no-op (sets, unlike maps, are idempotent)."""
        with self.lock:
            current: list[str] = obj.fields[field]
            if value not in current:
                self.update(obj.ref, {field: [*current, value]})

    def set_remove(self, obj: Obj, field: str, value: str) -> None:
        """``remove_<set>``: removing an absent member is a no-op."""
        with self.lock:
            current: list[str] = obj.fields[field]
            if value in current:
                self.update(obj.ref, {field: [v for v in current if v != value]})

    # ------------------------------------------------------------------- events
    def event_from(
        self,
        classes: Iterable[str],
        token: object,
        timeout: float,
        alive: Callable[[], None] = lambda: None,
    ) -> dict[str, Any]:
        """XAPI ``event.from``: changes since ``token``, long-polling up to ``timeout`` seconds.

        ``alive`` raises (e.g. ``SESSION_INVALID``) when the caller's session dies
        while it waits; it is called with the store lock held and must not take it.
        """
        since = parse_token(token)
        subs = _parse_subscriptions(classes)
        deadline = time.monotonic() + max(0.0, timeout)
        task_only = all(str(c).lower().split("/", 1)[0] == "task" for c in classes)
        if self.event_batch_delay and not task_only:
            # Throttle.Batching delay_before (xapi_globs.ml event_from_delay: 50 ms) before the first
            # read of every event.from; subscriptions to tasks only start at once (event_from_task_delay).
            time.sleep(self.event_batch_delay)
        while True:
            with self.lock:
                # No EVENTS_LOST: XAPI's event.from never raises it (only the old event.next did);
                # forgotten deletions are just missing. Clients compare valid_ref_counts.
                events, last = self._collect(subs, since)
                if events or self._closed or time.monotonic() >= deadline:
                    # As XAPI: the token is the newest generation among the *subscribed* objects
                    # reported (or the caller's own when none), not the database's. A token taken
                    # with a narrow subscription can therefore be far behind the database.
                    return {
                        "events": events,
                        "valid_ref_counts": self.counts(),
                        "token": format_token(max(since, last)),
                    }
                alive()
                seen = self._generation

                def woken(seen: int = seen) -> bool:
                    alive()
                    return self._generation != seen or self._closed

                self.changed.wait_for(woken, timeout=max(0.0, deadline - time.monotonic()))
                new_writes = self._generation != seen
            if new_writes and self.event_batch_delay:
                time.sleep(self.event_batch_delay)  # outside the lock, like XAPI's Thread.delay

    def inject(self, cls: object, ref: object) -> str:
        """XAPI ``event.inject``: touch the row and return a token from just before the touch, a
        cheap "from now on" for any subscription (XA ``ocaml/xapi/xapi_event.ml`` ``inject``)."""
        with self.lock:
            # The row's table must be named exactly (xapi_event.ml inject: ``tbl = _class``), so
            # "vm" or "Pool" is HANDLE_INVALID, unlike event.from's subscriptions.
            obj = self.find(ref) if isinstance(ref, str) else None
            if obj is None or obj.cls != cls:
                raise XapiError(errors.HANDLE_INVALID, [str(cls), str(ref)])
            before = self._generation
            self._touch(obj)
            self.changed.notify_all()
            return format_token(before)

    def forget_events(self) -> None:
        """Forget every deletion, as a xapi restart does (the queues are in memory only): tokens
        still work, and deleted objects are simply never reported as ``del``."""
        with self.lock:
            for queue in self._tombstones.values():
                queue.clear()
            self.changed.notify_all()

    def set_event_retention(self, count: int) -> None:
        """Make each table's deletion queue bound ``count`` instead of 512 (cut to ``count // 2``)."""
        with self.lock:
            self._event_retention = max(2, int(count))
            for queue in self._tombstones.values():
                while len(queue) >= self._event_retention:
                    queue.popleft()

    @property
    def closed(self) -> bool:
        """True once the simulator stopped: waits inside calls give up."""
        return self._closed

    def close(self) -> None:
        """Wake every long-poller so a stopping server does not wait for their timeouts."""
        with self.lock:
            self._closed = True
            self.changed.notify_all()

    # ---------------------------------------------------------------- internals
    def _touch(self, obj: Obj) -> None:
        self._generation += 1
        obj.modified = self._generation
        self._recent[obj.ref] = obj.modified
        self._recent.move_to_end(obj.ref)

    def _link(self, parent_cls: str, parent_ref: str, pfld: str, child: str) -> None:
        parent = self._objs.get(parent_ref)
        if parent is not None and parent.cls == parent_cls and child not in parent.fields[pfld]:
            parent.fields[pfld] = [*parent.fields[pfld], child]
            self._touch(parent)

    def _unlink(self, parent_cls: str, parent_ref: str, pfld: str, child: str) -> None:
        parent = self._objs.get(parent_ref)
        if parent is not None and parent.cls == parent_cls and child in parent.fields[pfld]:
            parent.fields[pfld] = [r for r in parent.fields[pfld] if r != child]
            self._touch(parent)

    def _set_single(self, parent_cls: str, parent_ref: str, pfld: str, value: str) -> None:
        parent = self._objs.get(parent_ref)
        if parent is not None and parent.cls == parent_cls and parent.fields[pfld] != value:
            parent.fields[pfld] = value
            self._touch(parent)

    def _collect(self, subs: list[tuple[str, str | None]], since: int) -> tuple[list[dict[str, Any]], int]:
        found: list[tuple[int, str, str, str, Obj | None]] = []
        last = since
        for ref in reversed(self._recent):
            gen = self._recent[ref]
            if gen <= since:
                break
            obj = self._objs[ref]
            if _matches(subs, obj.cls, ref):
                last = max(last, gen)
                if obj.created > since:
                    found.append((obj.created, "add", obj.cls, ref, obj))
                else:
                    found.append((gen, "mod", obj.cls, ref, obj))
        for queue in self._tombstones.values():
            for tomb in reversed(queue):
                if tomb.deleted <= since:
                    break
                if _matches(subs, tomb.cls, tomb.ref):
                    last = max(last, tomb.deleted)
                if tomb.created <= since and _matches(subs, tomb.cls, tomb.ref):
                    found.append((tomb.deleted, "del", tomb.cls, tomb.ref, None))
        found.sort(key=lambda item: item[0])
        events: list[dict[str, Any]] = []
        for gen, op, cls, ref, row in found:
            event: dict[str, Any] = {
                "id": str(gen),
                "timestamp": EVENT_TIMESTAMP,
                "class": SCHEMA[cls].event_name,
                "operation": op,
                "ref": ref,
            }
            if row is not None:
                event["snapshot"] = self.record(row)
            events.append(event)
        return events, last
