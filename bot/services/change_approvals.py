"""Approve, reject, cancel and expire change requests, and count tries that do not reach an end.

Each is one short transaction that writes its audit rows; approvals are counted under
the request's row lock, so the last approval always moves the request on.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import audit
from bot.db.models import ChangeApproval, ChangeRequest, ChangeResult
from bot.domain.approvals import (
    ApprovalCheck,
    State,
    check_approval,
    missing_approvals,
    outcome,
)
from bot.domain.changes import (
    Plan,
)
from bot.render import changes as render
from bot.render.blocks import Reply
from bot.services.change_store import EXPIRED, ChangeStore

log = logging.getLogger(__name__)


class ChangeApprovals(ChangeStore):
    # -- approve / reject / cancel ---------------------------------------------------

    def approve(self, approver: str, request_id: int) -> tuple[Reply, bool]:
        """Count one approval; returns the clicker's answer and whether the request is now approved.

        Approvals are counted under a lock on the request's row (``SELECT … FOR UPDATE`` on
        PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers), so two approvers
        clicking at once on two replicas are counted one after the other and the last one
        always moves the request on. The unique (request, approver) pair is the answer to a
        double click: "already approved", never an error."""
        now = self.clock()
        with self.sessions.begin() as session:
            request = self._load(session, request_id, lock=True)
            if request.state == State.PENDING and now >= request.expires_at:
                self._expire(session, request, now)
                self._refuse(session, approver, request, "approve", EXPIRED)
                outcome: tuple[str, str] = ("expired", EXPIRED)
            else:
                outcome = self._count_approval(session, request, approver, now)
        verdict, reason = outcome
        if verdict not in ("refused", "already"):  # a refused or repeated click changed nothing on the card
            self.refresh_message(request_id)
        if verdict in ("expired", "refused"):
            return render.refusal(f"Not approved: {reason}."), False
        if verdict == "already":
            return render.already_approved(request, reason), False
        if verdict == "recorded":  # the count as it stood when this approval was added, not after
            return render.approval_recorded(request, False, int(reason)), False
        return render.approval_recorded(request, True), True

    def _count_approval(
        self, session: Session, request: ChangeRequest, approver: str, now: datetime
    ) -> tuple[str, str]:
        """("approved" | "recorded" | "already" | "refused", reason), in the caller's transaction;
        for "recorded", the reason is how many approvals are still missing."""
        so_far = self.approvers_of(request.id, session)
        check = self._check(request, approver, so_far, now)
        if check.decision.allowed and not check.already and not self._add_approval(session, request, approver, now):
            # Only reachable without the row lock (it is the database's answer, not a guess):
            # the same approver's other click was counted first.
            so_far = self.approvers_of(request.id, session)
            check = self._check(request, approver, so_far, now)
        if not check.decision.allowed:
            self._refuse(session, approver, request, "approve", check.decision.reason)
            return ("already" if check.already else "refused"), check.decision.reason
        if not check.already:
            audit.record(
                session,
                actor=approver,
                action="change.approval",
                target=f"change #{request.id}",
                details={"approvals": [*so_far, approver], "required": self.slack.required_approvals},
            )
        if not check.complete:
            return "recorded", str(missing_approvals([*so_far, approver], self.slack.required_approvals))
        if self.transition(session, request, (State.PENDING,), State.APPROVED, approver):
            return "approved", ""
        return "already", f"you have already approved this request; it is {State(request.state).label}"

    def _check(self, request: ChangeRequest, approver: str, so_far: list[str], now: datetime) -> ApprovalCheck:
        return check_approval(
            policy=self.access,
            members_of=self.members_of,
            approver=approver,
            requester=request.requester,
            state=State(request.state),
            expires_at=request.expires_at,
            now=now,
            approvals_so_far=so_far,
            required=self.slack.required_approvals,
        )

    @staticmethod
    def _add_approval(session: Session, request: ChangeRequest, approver: str, now: datetime) -> bool:
        """Insert one approval; False when the unique (request, approver) pair already exists."""
        try:
            with session.begin_nested():
                session.add(ChangeApproval(request_id=request.id, approver=approver, at=now))
        except IntegrityError:
            return False
        return True

    def reject(self, user: str, request_id: int) -> Reply:
        return self._close(user, request_id, State.REJECTED)

    def cancel(self, user: str, request_id: int) -> Reply:
        return self._close(user, request_id, State.CANCELLED)

    def _close(self, user: str, request_id: int, new: State) -> Reply:
        now = self.clock()
        verb = "reject" if new is State.REJECTED else "cancel"
        with self.sessions.begin() as session:
            request = self._load(session, request_id, lock=True)  # queued behind a concurrent approval
            if new is State.CANCELLED:
                allowed = user == request.requester or self.access.may_approve(
                    user, request.requester, self.members_of
                ).allowed
                reason = "only the requester or an approver can cancel a request"
            else:
                decision = self.access.may_approve(user, "", self.members_of)
                allowed, reason = decision.allowed, decision.reason
            if allowed and request.state == State.PENDING and now >= request.expires_at:
                self._expire(session, request, now)
            if not allowed:
                self._refuse(session, user, request, verb, reason)
                refused = reason
            elif not self.transition(session, request, (State.PENDING, State.APPROVED), new, user):
                refused = f"this request is already {State(request.state).label}"
                self._refuse(session, user, request, verb, refused)
            else:
                refused = ""
        self.refresh_message(request_id)
        if refused:
            return render.refusal(f"Not {verb}ed: {refused}.")
        return render.closed(request_id, new, user)

    def expire_overdue(self) -> int:
        """Mark pending requests past their time as expired; their buttons then refuse."""
        now = self.clock()
        with self.sessions.begin() as session:
            overdue = session.scalars(
                select(ChangeRequest).where(ChangeRequest.state == State.PENDING, ChangeRequest.expires_at <= now)
            ).all()
            for request in overdue:
                self._expire(session, request, now)
            ids = [r.id for r in overdue]
        for request_id in ids:
            self.refresh_message(request_id)
        return len(ids)

    # -- tries that do not reach an end ------------------------------------------------------

    def attempt_failed(
        self, request_id: int, reason: str, holder: str, seen: datetime | None = None
    ) -> tuple[State, int] | None:
        """Count one try to apply (or finish) a request that did not reach an end, in the database.

        Below ``apply_attempts`` the request keeps its state and is tried again a lease later
        (``updated_at`` is bumped for an approved one; a resumed one has a fresh heartbeat).
        At the limit it fails with ``reason``: the thread, the card and the audit say so, and
        nobody tries again. Returns the state it is left in and the tries so far; None when it
        moved on meanwhile or another replica holds it (that replica's tries are its own to count).

        ``seen`` is the ``updated_at`` of the approved request this try started from: when two
        replicas' housekeepers try it in the same round, the second finds it counted already."""
        now = self.clock()
        limit = self.slack.apply_attempts
        with self.sessions.begin() as session:
            request = self._load(session, request_id, lock=True)
            if request.state == State.APPLYING and request.executor != holder:
                return None
            if request.state not in (State.APPROVED, State.APPLYING):
                return None
            if request.state == State.APPROVED and seen is not None and request.updated_at != seen:
                return None  # tried alongside by another replica, which counted (and said) it
            request.attempts = (request.attempts or 0) + 1
            if request.state == State.APPROVED:
                request.updated_at = now
            session.flush()
            attempts = request.attempts
            audit.record(
                session,
                actor="system",
                action="change.attempt_failed",
                target=f"change #{request.id}",
                details={"attempt": attempts, "of": limit, "reason": reason, "state": request.state},
            )
            if attempts < limit:
                return State(request.state), attempts
            results = session.scalars(
                select(ChangeResult.status).where(ChangeResult.request_id == request.id)
            ).all()
            done = sum(1 for r in results if r in ("applied", "activated"))
            # Failed: recorded as failed, or never written (no result at all).
            failed = len(results) - done + max(len(Plan.from_json(request.plan).interfaces) - len(results), 0)
            final = State.FAILED if request.state == State.APPROVED else outcome(done, failed)
            summary = {"gave_up": reason, "attempts": attempts, "applied": done}
            if not self.transition(session, request, (State(request.state),), final, "system",
                                   summary=summary, reported_at=now):
                return None
        self.refresh_message(request_id)
        self._post_in_thread(request, render.gave_up(request, final, attempts, reason, done, failed))
        return final, attempts

    def _post_in_thread(self, request: ChangeRequest, reply: Reply) -> None:
        channel = request.message_channel or request.channel
        if not channel:
            return
        try:
            self.messenger.post(channel, reply, thread_ts=request.message_ts)
        except Exception:
            log.exception("could not post about change #%s", request.id)

