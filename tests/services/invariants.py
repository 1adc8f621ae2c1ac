"""The change-safety invariant, checked against the simulator's own state (its truth, not xenbot's).

After any fault, every key a change planned is at its target, untouched (the plan's
``before``), or at someone else's value — and the stored results say exactly which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from sqlalchemy import select

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.changes import Plan
from bot.domain.outcomes import KeyState, judge, status_of
from bot.wiring import Services
from bot.xen.sim import Simulator

Theirs = Mapping[tuple[str, str], str | None]  # (interface uuid, key) → the value someone else wrote


def live_config(sim: Simulator, ref: str) -> dict[str, str]:
    return dict(sim.pool.fields(ref)["other_config"])


def check_change(services: Services, sim: Simulator, request_id: int, theirs: Theirs | None = None) -> Counter[str]:
    """Assert the invariant for a finished change; returns its result statuses, counted."""
    with services.sessions() as session:
        request = session.get(ChangeRequest, request_id)
        assert request is not None
        results = {
            r.interface_uuid: r
            for r in session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id))
        }
    plan = Plan.from_json(request.plan)
    statuses: Counter[str] = Counter()
    for item in plan.interfaces:
        live = live_config(sim, item.ref)
        target = item.expected()
        states = judge(item.previous(), target, live)
        assert KeyState.MIDWAY not in states.values(), f"{item.label}: a key left absent midway: {live}"
        for key_name, state in states.items():
            if state is KeyState.FOREIGN and theirs is not None:
                assert theirs.get((item.uuid, key_name), "<none>") == live.get(key_name), (
                    f"{item.label} {key_name}={live.get(key_name)!r} is neither xenbot's target, the old value, "
                    "nor what someone else wrote"
                )
        result = results.get(item.uuid)
        assert result is not None, f"{item.label}: no result recorded"
        assert result.after == {k: live.get(k) for k in target}, f"{item.label}: recorded {result.after}, XAPI {live}"
        assert result.status == status_of(states), f"{item.label}: recorded {result.status}, keys {states}"
        if KeyState.FOREIGN in states.values():
            assert "someone else" in (result.error or "")
        statuses[result.status] += 1
    return statuses


def check_reverted(services: Services, sim: Simulator, request_id: int, theirs: Theirs | None = None) -> None:
    """After a revert of ``request_id``: every key is back at its old value, except someone else's."""
    with services.sessions() as session:
        request = session.get(ChangeRequest, request_id)
        assert request is not None
    for item in Plan.from_json(request.plan).interfaces:
        live = live_config(sim, item.ref)
        for change in item.changes:
            expected = (theirs or {}).get((item.uuid, change.key), change.before)
            assert live.get(change.key) == expected, f"{item.label} {change.key}: {live.get(change.key)!r}"
