"""Where each key of an interface ended up after xenbot wrote to it, and what that makes the interface.

xenbot's promise after any fault: every key it planned to change is at its **target**,
**untouched** (still the value the approver saw), or at **someone else's** value — and the
record says which. XAPI has no compare-and-set on map keys, so xenbot never overwrites a key
whose live value is neither the plan's ``before`` nor its target: that value was written by
someone else after the plan was approved, and it is theirs.

One state is xenbot's own and temporary: replacing a present value takes
``remove_from_other_config`` then ``add_to_other_config``; a key that is absent while both
``before`` and the target are values is **midway** (removed, not yet re-added). Whoever
finds it (the writer, the end-of-apply reconcile, recovery after a crash) finishes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class KeyState(StrEnum):
    TARGET = "target"
    UNTOUCHED = "untouched"
    MIDWAY = "midway"
    FOREIGN = "foreign"


class Status(StrEnum):
    """An interface's result, from its keys' states."""

    APPLIED = "applied"  # every key at its target
    PARTIAL = "partial"  # some keys at their target, others not: "partly changed"
    CONFLICT = "conflict"  # none at target, and someone else changed at least one: left alone
    FAILED = "failed"  # none at target, all untouched: nothing written
    VERIFY_FAILED = "verify_failed"  # before per-key judgement (older rows only)
    ACTIVATED = "activated"  # an activation step succeeded
    GONE = "gone"  # the interface was destroyed meanwhile (HANDLE_INVALID): dropped, neither done nor failed


SUCCESSES = frozenset({Status.APPLIED, Status.ACTIVATED})
FAILURES = frozenset({Status.PARTIAL, Status.CONFLICT, Status.FAILED, Status.VERIFY_FAILED})
# Results with keys at xenbot's value, so with a setting that still has to take effect.
WRITTEN = frozenset({Status.APPLIED, Status.PARTIAL})

STATUS_LABEL = {
    Status.APPLIED: "applied",
    Status.PARTIAL: "partly changed",
    Status.CONFLICT: "left alone (someone else's value)",
    Status.FAILED: "failed",
    Status.VERIFY_FAILED: "verify failed",
    Status.ACTIVATED: "activated",
    Status.GONE: "no longer exists",
}

Values = Mapping[str, str | None]


def judge_key(before: str | None, target: str | None, live: str | None) -> KeyState:
    """One key: ``None`` means absent (for ``before``, ``target`` and ``live`` alike)."""
    if live == target:
        return KeyState.TARGET
    if live == before:
        return KeyState.UNTOUCHED
    if live is None and before is not None and target is not None:
        return KeyState.MIDWAY
    return KeyState.FOREIGN


def judge(before: Values, target: Values, live: Values) -> dict[str, KeyState]:
    """Every planned key's state, given the interface's live ``other_config``."""
    return {k: judge_key(before.get(k), target[k], live.get(k)) for k in target}


def status_of(states: Mapping[str, KeyState]) -> Status:
    """The interface's status once no key is midway (a midway key is unfinished work, not a result)."""
    assert KeyState.MIDWAY not in states.values(), "finish or report midway keys first"
    values = set(states.values())
    if values <= {KeyState.TARGET}:
        return Status.APPLIED
    if KeyState.TARGET in values:
        return Status.PARTIAL
    if KeyState.FOREIGN in values:
        return Status.CONFLICT
    return Status.FAILED


def foreign_keys(before: Values, target: Values, after: Values | None) -> dict[str, str | None]:
    """Keys someone else holds in a recorded result: key → their value."""
    if after is None:
        return {}
    states = judge(before, target, after)
    return {k: after.get(k) for k, state in states.items() if state is KeyState.FOREIGN}


def written_keys(before: Values, target: Values, after: Values | None) -> list[str]:
    """Keys a recorded result shows at xenbot's value, changed from the plan's ``before``.

    A revert restores these, whatever the interface's status: a partly changed interface
    still carries what xenbot wrote."""
    if after is None:
        return [k for k in target if target[k] != before.get(k)]  # unknown: revert judges live state
    return [k for k in target if target[k] != before.get(k) and after.get(k, None) == target[k]]


def explain(before: Values, target: Values, live: Values, notes: Mapping[str, str] | None = None) -> str | None:
    """One line for people: which keys are not at target and why; None when all are."""
    parts = []
    for k, state in judge(before, target, live).items():
        if state is KeyState.TARGET:
            continue
        if state is KeyState.FOREIGN:
            parts.append(
                f"{k} is {_show(live.get(k))}, set by someone else (planned {_show(before.get(k))} → "
                f"{_show(target[k])}); left alone"
            )
        elif state is KeyState.MIDWAY:
            parts.append(f"{k} is absent midway ({_show(before.get(k))} → {_show(target[k])})")
        else:
            why = (notes or {}).get(k, "not written")
            parts.append(f"{k} still {_show(before.get(k))}: {why}")
    return "; ".join(parts) or None


def _show(value: str | None) -> str:
    return "absent" if value is None else repr(value)
