"""Change requests in the database: creating, loading, moving state by compare-and-set, cards.

The base of :class:`bot.services.changes.ChangeService`; approvals are in
:mod:`bot.services.change_approvals`, planning and the requests people make in
:mod:`bot.services.changes`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.db import audit
from bot.db.models import ChangeApproval, ChangeRequest, ChangeResult, PendingActivation
from bot.domain import names
from bot.domain.access import AccessPolicy, MembersOf
from bot.domain.activation import stranded_errors
from bot.domain.approvals import (
    State,
    check_transition,
)
from bot.domain.changes import (
    ACTIVATION_KINDS,
    Plan,
    ScopeKind,
)
from bot.domain.outcomes import written_keys
from bot.render import changes as render
from bot.services.inspection import InspectionService
from bot.services.messenger import Messenger
from bot.settings import SlackSettings

log = logging.getLogger(__name__)

# How long a new request's first card post may take before the housekeeper posts it instead.
CARD_GRACE = timedelta(seconds=30)
EXPIRED = "this request has expired; ask for it again"
LATE_CARD_NOTE = "Posted late: Slack did not take this card when the change was requested."

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ChangeError(Exception):
    """A request that cannot be made as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    target: str
    pool: str | None = None


class ChangeStore:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        inspection: InspectionService,
        access: AccessPolicy,
        members_of: MembersOf,
        slack: SlackSettings,
        messenger: Messenger,
        clock: Clock = utcnow,
    ) -> None:
        self.sessions = sessions
        self.inspection = inspection
        self.access = access
        self.members_of = members_of
        self.slack = slack
        self.messenger = messenger
        self.clock = clock

    def create_request(
        self,
        *,
        kind: str,
        plan: Plan,
        requester: str,
        channel: str | None,
        reason: str | None,
        scope_target: str,
        parent_id: int | None = None,
    ) -> ChangeRequest:
        now = self.clock()
        stored = plan.to_json() | {"scope_target": scope_target}
        with self.sessions.begin() as session:
            request = ChangeRequest(
                kind=kind,
                state=State.PENDING,
                action=plan.action if kind != "activate" else "activate",
                pool=plan.pool,
                scope_kind=plan.scope_kind,
                scope_label=plan.scope_label,
                modes=list(plan.modes),
                reason=reason,
                requester=requester,
                channel=channel,
                plan=stored,
                plan_hash=plan.content_hash,
                parent_id=parent_id,
                created_at=now,
                updated_at=now,
                expires_at=now + timedelta(minutes=self.slack.approval_ttl_minutes),
            )
            session.add(request)
            session.flush()
            audit.record(
                session,
                actor=requester,
                action="change.requested",
                target=f"change #{request.id}",
                channel=channel,
                details={
                    "kind": kind,
                    "action": request.action,
                    "pool": plan.pool,
                    "scope": f"{plan.scope_kind}={plan.scope_label}",
                    "modes": list(plan.modes),
                    "reason": reason,
                    "interfaces": len(plan.interfaces),
                    "unchanged": plan.unchanged,
                    "plan_hash": plan.content_hash,
                    "parent_id": parent_id,
                },
            )
        return request

    def post_for_approval(self, request: ChangeRequest, plan: Plan, note: str | None = None) -> None:
        channel = self.slack.approvals_channel or request.channel
        if not channel:
            return
        approvals = self.approvers_of(request.id)
        reply = render.approval_message(request, plan, approvals, self.slack.required_approvals, note)
        try:
            ts = self.messenger.post(channel, reply)
        except Exception as exc:
            # The request is stored and stays pending; the requester is told why no card appeared.
            log.exception("could not post change #%s for approval in %s", request.id, channel)
            raise ChangeError(
                f"change #{request.id} is recorded, but its approval card could not be posted in <#{channel}> "
                f"({type(exc).__name__}: {exc}). It stays pending and xenbot posts the card as soon as Slack "
                "answers again; if this persists, ask an admin to check xenbot's Slack token and channel membership."
            ) from exc
        if ts:
            with self.sessions.begin() as session:
                session.execute(
                    update(ChangeRequest)
                    .where(ChangeRequest.id == request.id)
                    .values(message_channel=channel, message_ts=ts)
                )
            request.message_channel, request.message_ts = channel, ts

    def repost_missing_cards(self, grace: timedelta = CARD_GRACE) -> list[int]:
        """Post the approval cards that Slack did not take (down, timed out, token revoked) once it does.

        ``grace`` leaves the first attempt alone while it may still be running. The card's
        channel is claimed by compare-and-set first, so two replicas never both post it."""
        now = self.clock()
        with self.sessions() as session:
            missing = session.scalars(
                select(ChangeRequest).where(
                    ChangeRequest.state == State.PENDING,
                    ChangeRequest.message_ts.is_(None),
                    ChangeRequest.message_channel.is_(None),
                    ChangeRequest.created_at <= now - grace,
                    ChangeRequest.expires_at > now,
                )
            ).all()
        posted = []
        for request in missing:
            channel = self.slack.approvals_channel or request.channel
            if not channel or not self._mark_card(request.id, None, channel):
                continue
            try:
                self.post_for_approval(request, Plan.from_json(request.plan), note=LATE_CARD_NOTE)
            except ChangeError:
                self._mark_card(request.id, channel, None)  # still unreachable: try again next round
                continue
            posted.append(request.id)
        return posted

    def _mark_card(self, request_id: int, expected: str | None, channel: str | None) -> bool:
        with self.sessions.begin() as session:
            result = session.execute(
                update(ChangeRequest)
                .where(
                    ChangeRequest.id == request_id,
                    ChangeRequest.message_ts.is_(None),
                    ChangeRequest.message_channel.is_(None)
                    if expected is None
                    else ChangeRequest.message_channel == expected,
                )
                .values(message_channel=channel)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    # -- reading -------------------------------------------------------------------------

    def recent(self, limit: int = 10) -> list[tuple[ChangeRequest, list[str]]]:
        with self.sessions() as session:
            requests = session.scalars(select(ChangeRequest).order_by(ChangeRequest.id.desc()).limit(limit)).all()
            return [(r, self.approvers_of(r.id, session)) for r in requests]

    def detail(self, request_id: int) -> tuple[ChangeRequest, list[str], list[ChangeResult]]:
        with self.sessions() as session:
            request = self._load(session, request_id)
            results = session.scalars(
                select(ChangeResult).where(ChangeResult.request_id == request_id).order_by(ChangeResult.label)
            ).all()
            return request, self.approvers_of(request_id, session), list(results)

    def pending_activation(self, among: Collection[str] | None = None) -> dict[str, str]:
        """Interface uuid → the activation it still needs; shown by the inspection commands.

        Plain rows, not ORM objects, and only ``among`` when given: after a pool-wide change
        there are thousands, and ``/xen vifs VM`` needs three."""
        query = select(PendingActivation.interface_uuid, PendingActivation.method)
        if among is not None:
            query = query.where(PendingActivation.interface_uuid.in_(list(among)))
        with self.sessions() as session:
            return {uuid: method for uuid, method in session.execute(query)}

    # -- helpers -----------------------------------------------------------------------

    def _load(self, session: Session, request_id: int, *, lock: bool = False) -> ChangeRequest:
        """The request; ``lock`` takes its row lock (PostgreSQL) so decisions on it queue up."""
        request = session.get(ChangeRequest, request_id, with_for_update=lock or None, populate_existing=lock)
        if request is None:
            latest = session.scalar(select(func.max(ChangeRequest.id))) or 0
            raise names.NotFound("change request", f"#{request_id}", [f"#{latest}"] if latest else [])
        return request

    def approvers_of(self, request_id: int, session: Session | None = None) -> list[str]:
        if session is None:
            with self.sessions() as own:
                return self.approvers_of(request_id, own)
        return list(
            session.scalars(
                select(ChangeApproval.approver)
                .where(ChangeApproval.request_id == request_id)
                .order_by(ChangeApproval.id)
            )
        )

    def _written_values(self, request_id: int) -> dict[str, dict[str, tuple[str | None, str | None]]]:
        """Every key the change wrote, whatever its interface's status: uuid → key → (before, written).

        A partly changed or failed interface can still carry keys at xenbot's value; a revert
        that looked only at fully applied ones would leave those behind."""
        with self.sessions() as session:
            request = self._load(session, request_id)
            results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == request_id)).all()
            targets = {i.uuid: i.expected() for i in Plan.from_json(request.plan).interfaces}
            written: dict[str, dict[str, tuple[str | None, str | None]]] = {}
            for r in results:
                target = targets.get(r.interface_uuid)
                if not target:
                    continue
                keys = written_keys(r.before, target, r.after)
                if keys:
                    written[r.interface_uuid] = {k: (r.before.get(k), target[k]) for k in keys}
            return written

    def transition(
        self, session: Session, request: ChangeRequest, expected: Sequence[State], new: State, actor: str, **values: Any
    ) -> bool:
        """Compare-and-set on the state column; False when someone else moved it first."""
        if request.state not in expected:
            return False
        check_transition(State(request.state), new)
        result = session.execute(
            update(ChangeRequest)
            .where(ChangeRequest.id == request.id, ChangeRequest.state == request.state)
            .values(state=new, updated_at=self.clock(), **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            session.refresh(request)
            return False
        before = request.state
        session.refresh(request)
        metrics.CHANGE_TRANSITIONS.labels(new.value).inc()
        audit.record(
            session,
            actor=actor,
            action=f"change.{new.value}",
            target=f"change #{request.id}",
            details={"from": before, "to": new.value, **{k: str(v) for k, v in values.items()}},
        )
        return True

    def _transition(self, session: Session, request: ChangeRequest, old: State, new: State, actor: str) -> None:
        if not self.transition(session, request, (old,), new, actor):
            log.info("change #%s moved on before %s -> %s", request.id, old, new)

    def _expire(self, session: Session, request: ChangeRequest, now: datetime) -> None:
        self.transition(session, request, (State.PENDING,), State.EXPIRED, "system")

    def _refuse(self, session: Session, user: str, request: ChangeRequest, verb: str, reason: str) -> None:
        audit.record(
            session,
            actor=user,
            action=f"change.{verb}_refused",
            target=f"change #{request.id}",
            details={"reason": reason, "state": request.state},
        )

    @staticmethod
    def _still_stranded(session: Session, request_id: int) -> list[str]:
        """What an activation left off and no Start VM / Plug VIF request has put back since."""
        errors = session.execute(
            select(ChangeResult.interface_uuid, ChangeResult.error).where(ChangeResult.request_id == request_id)
        ).all()
        repairs = select(ChangeRequest.id).where(
            ChangeRequest.parent_id == request_id, ChangeRequest.kind.in_(["start-vm", "plug-vif"])
        )
        put_back = set(
            session.scalars(
                select(ChangeResult.interface_uuid).where(
                    ChangeResult.request_id.in_(repairs), ChangeResult.status == "activated"
                )
            )
        )
        return stranded_errors([error for uuid, error in errors if uuid not in put_back])

    def refresh_message(self, request_id: int) -> None:
        """Re-render the approval message from the database: state, approvers, and live buttons."""
        with self.sessions() as session:
            request = self._load(session, request_id)
            approvers = self.approvers_of(request_id, session)
            stranded: list[str] = []
            if request.kind in ACTIVATION_KINDS and request.state not in (State.PENDING, State.APPROVED):
                stranded = self._still_stranded(session, request_id)
        if request.message_channel and request.message_ts:
            plan = Plan.from_json(request.plan)
            reply = render.approval_message(
                request, plan, approvers, self.slack.required_approvals, stranded=stranded
            )
            try:
                self.messenger.update(request.message_channel, request.message_ts, reply)
            except Exception:
                log.exception("could not update the message of change #%s", request_id)


