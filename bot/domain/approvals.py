"""The life of a change request, and who may move it along.

The database enforces these transitions with compare-and-set updates
(``UPDATE … WHERE state = :expected``), so a double click, a Slack retry or a
second replica cannot move a request twice; this module says which moves exist.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.domain.access import AccessPolicy, Decision, MembersOf


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    APPLYING = "applying"
    APPLIED = "applied"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    STALE = "stale"

    @property
    def final(self) -> bool:
        return self not in (State.PENDING, State.APPROVED, State.APPLYING)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.APPROVED, State.REJECTED, State.CANCELLED, State.EXPIRED, State.STALE}),
    # approved → failed: xenbot gave up on applying it (``apply_attempts`` tries that did not finish).
    State.APPROVED: frozenset({State.APPLYING, State.STALE, State.CANCELLED, State.FAILED}),
    State.APPLYING: frozenset({State.APPLIED, State.PARTIALLY_FAILED, State.FAILED, State.STALE}),
}


class TransitionError(Exception):
    """A move the state machine does not allow (the request moved on meanwhile)."""


def check_transition(current: State, new: State) -> None:
    if new not in TRANSITIONS.get(current, frozenset()):
        raise TransitionError(f"a {current.label} request cannot become {new.label}")


def outcome(applied: int, failed: int) -> State:
    if failed == 0:
        return State.APPLIED
    return State.FAILED if applied == 0 else State.PARTIALLY_FAILED


@dataclass(frozen=True, slots=True)
class ApprovalCheck:
    """Whether a click may count as an approval, and whether it completes the request.

    ``already`` means this approver's approval is on record (a double click, a Slack retry,
    the same click reaching another replica): nothing is added, and the click is answered
    with where the request stands rather than refused as an error."""

    decision: Decision
    complete: bool = False
    already: bool = False


def check_approval(
    *,
    policy: AccessPolicy,
    members_of: MembersOf,
    approver: str,
    requester: str,
    state: State,
    expires_at: datetime,
    now: datetime,
    approvals_so_far: Collection[str],
    required: int,
) -> ApprovalCheck:
    """Judge one click against approvals read under the request's row lock.

    A pending request that already has enough approvals (left so by a race before approvals
    were counted under a lock) is completed by the next valid click, so it cannot hang."""
    if approver in approvals_so_far:
        if state is not State.PENDING:
            reason = f"you have already approved this request; it is {state.label}"
            return ApprovalCheck(Decision(False, reason), already=True)
        complete = len(set(approvals_so_far)) >= required and now < expires_at
        left = max(required - len(set(approvals_so_far)), 0)
        reason = "you have already approved this request; " + (
            "it is approved now" if complete else f"it needs {_approvers(left)}"
        )
        return ApprovalCheck(Decision(complete, reason), complete=complete, already=True)
    if state is not State.PENDING:
        return ApprovalCheck(Decision(False, f"this request is already {state.label}"))
    if now >= expires_at:
        return ApprovalCheck(Decision(False, "this request has expired; ask for it again"))
    allowed = policy.may_approve(approver, requester, members_of)
    if not allowed.allowed:
        return ApprovalCheck(allowed)
    return ApprovalCheck(Decision(True), complete=len(set(approvals_so_far)) + 1 >= required)


def missing_approvals(approvals_so_far: Collection[str], required: int) -> int:
    return max(required - len(set(approvals_so_far)), 0)


def _approvers(n: int) -> str:
    return "another approver" if n == 1 else f"{n} more approvers"
