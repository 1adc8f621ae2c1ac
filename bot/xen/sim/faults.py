"""Runtime fault injection for the simulator's HTTP front end.

Production pools fail in ways a happy-path test never sees: a method starts
returning an error for some calls, the master drops a TCP connection mid-call, a
host stops answering, sessions vanish after a master restart. Rules here describe
those failures per XAPI method name (``fnmatch`` patterns such as ``VIF.*`` or
``Async.*``); the server asks :meth:`Faults.plan` once per incoming call and obeys.

Shares are drawn from a per-rule ``random.Random`` seeded at creation, so a test
that makes the same calls in the same order sees the same failures every run.
``sim.*`` control calls are never subject to faults, so a test can always release
a hang or clear rules.

A note on dropped connections: Python's ``xmlrpc.client`` (and so ``XenAPI``)
silently retries a request once when a kept-alive connection is closed without an
answer. With ``after_execute=True`` the call *was* executed before the drop, so the
retry runs it a second time — the way a real ``add_to_other_config`` can come back
with ``MAP_DUPLICATE_KEY`` after a network blip.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.xen.sim.errors import XapiError


@dataclass
class Rule:
    """One active fault rule."""

    id: int
    kind: str  # "fail" | "drop" | "hang" | "latency"
    pattern: str
    share: float = 1.0
    code: str = ""
    params: tuple[str, ...] = ()
    after_execute: bool = False
    latency_s: float = 0.0
    times: int | None = None  # fire for at most this many matching calls (None = unlimited)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def hits(self, method: str) -> bool:
        """Whether this rule fires for ``method`` (pattern match, share draw, remaining count)."""
        if not fnmatch.fnmatchcase(method, self.pattern):
            return False
        if self.times is not None and self.times <= 0:
            return False
        if not (self.share >= 1.0 or self.rng.random() < self.share):
            return False
        if self.times is not None:
            self.times -= 1
        return True

    def describe(self) -> dict[str, object]:
        """A plain description (for ``sim.list_faults``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "pattern": self.pattern,
            "share": self.share,
            "code": self.code,
            "params": list(self.params),
            "after_execute": self.after_execute,
            "latency_ms": self.latency_s * 1000.0,
            "times": -1 if self.times is None else self.times,
        }


@dataclass
class CallPlan:
    """What the server must do with one incoming call."""

    latency_s: float = 0.0
    hang: threading.Event | None = None
    drop_before: bool = False
    drop_after: bool = False
    failure: XapiError | None = None


class Faults:
    """The active fault rules. Thread-safe; shared by every host's listener."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._ids = itertools.count(1)
        self._seed = seed
        self._gate = threading.Event()
        self._gate.set()  # open: nothing hangs

    def _add(self, rule: Rule, seed: int | None) -> int:
        rule.rng = random.Random(self._seed * 1_000_003 + rule.id if seed is None else seed)  # noqa: S311
        with self._lock:
            self._rules.append(rule)
        return rule.id

    def fail(
        self,
        pattern: str,
        code: str,
        params: Iterable[object] = (),
        *,
        share: float = 1.0,
        times: int | None = None,
        seed: int | None = None,
    ) -> int:
        """Answer a ``share`` of calls matching ``pattern`` (at most ``times``) with ``[code, *params]``."""
        rule = Rule(next(self._ids), "fail", pattern, share, code, tuple(str(p) for p in params), times=times)
        return self._add(rule, seed)

    def drop(
        self,
        pattern: str = "*",
        *,
        share: float = 1.0,
        after_execute: bool = False,
        times: int | None = None,
        seed: int | None = None,
    ) -> int:
        """Close the connection without answering a ``share`` of matching calls (at most ``times``)."""
        rule = Rule(next(self._ids), "drop", pattern, share, after_execute=after_execute, times=times)
        return self._add(rule, seed)

    def latency(self, ms: float, pattern: str = "*") -> int:
        """Add ``ms`` milliseconds before answering matching calls (on top of the global latency)."""
        return self._add(Rule(next(self._ids), "latency", pattern, latency_s=ms / 1000.0), None)

    def hang(self, pattern: str = "*") -> int:
        """Stop answering matching calls until :meth:`release` (or :meth:`clear`)."""
        rule_id = self._add(Rule(next(self._ids), "hang", pattern), None)
        self._gate.clear()
        return rule_id

    def release(self) -> None:
        """Let every hung call proceed and remove the hang rules."""
        with self._lock:
            self._rules = [r for r in self._rules if r.kind != "hang"]
        self._gate.set()

    def remove(self, rule_id: int) -> None:
        """Remove one rule (releasing hung calls if it was the last hang rule)."""
        with self._lock:
            self._rules = [r for r in self._rules if r.id != rule_id]
            hanging = any(r.kind == "hang" for r in self._rules)
        if not hanging:
            self._gate.set()

    def clear(self) -> None:
        """Remove every rule and release hung calls."""
        with self._lock:
            self._rules = []
        self._gate.set()

    def rules(self) -> list[Rule]:
        """A snapshot of the active rules."""
        with self._lock:
            return list(self._rules)

    def plan(self, method: str) -> CallPlan:
        """Decide the fate of one call to ``method``."""
        plan = CallPlan()
        with self._lock:
            for rule in self._rules:
                if rule.kind == "latency" and rule.hits(method):
                    plan.latency_s += rule.latency_s
                elif rule.kind == "hang" and plan.hang is None and rule.hits(method):
                    plan.hang = self._gate
                elif rule.kind == "drop" and not (plan.drop_before or plan.drop_after) and rule.hits(method):
                    plan.drop_after = rule.after_execute
                    plan.drop_before = not rule.after_execute
                elif rule.kind == "fail" and plan.failure is None and rule.hits(method):
                    plan.failure = XapiError(rule.code, rule.params)
        return plan
