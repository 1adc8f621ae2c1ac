"""Offload changes behind approvals: request, approve, reject, cancel, expire, revert, activate.

Each use case is one short transaction that also writes its audit rows. State
moves only by compare-and-set (``UPDATE … WHERE state = :expected``): whoever
loses a race — a double click, a Slack retry, a second replica — changes
nothing and is told what happened instead. Applying is in
:mod:`bot.services.apply`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.db import audit
from bot.db.models import ChangeApproval, ChangeRequest, ChangeResult, PendingActivation
from bot.domain import names
from bot.domain.access import AccessPolicy, MembersOf
from bot.domain.approvals import State, check_approval, check_transition
from bot.domain.changes import (
    ACTIVATION_TEXT,
    AUTOMATIC_ACTIVATIONS,
    ChangeAction,
    InterfacePlan,
    Plan,
    ScopeKind,
    activation_for,
    interfaces_in_scope,
    lacks_permission,
    permission_note,
    plan_change,
    plan_restore,
)
from bot.domain.model import Interface, PoolInventory, Vif
from bot.domain.offload import ModeError, parse_modes
from bot.domain.outcomes import written_keys
from bot.render import changes as render
from bot.render.blocks import Reply
from bot.services.inspection import InspectionService
from bot.services.messenger import Messenger
from bot.settings import SlackSettings

log = logging.getLogger(__name__)

# How long a new request's first card post may take before the housekeeper posts it instead.
CARD_GRACE = timedelta(seconds=30)
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


class ChangeService:
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

    # -- planning -------------------------------------------------------------------

    def resolve_scope(self, scope: Scope) -> tuple[PoolInventory, str, list[Interface]]:
        """Live inventory, a label for people, and the interfaces the scope covers."""
        if scope.kind == "vm":
            inventory, vm = self.inspection.find_vm(scope.target, scope.pool)
            return inventory, vm.name, interfaces_in_scope(inventory, "vm", vm)
        if scope.kind == "host":
            inventory, host = self.inspection.find_host(scope.target, scope.pool)
            ifaces = [i for i in interfaces_in_scope(inventory, "host", host) if _offloadable(i)]
            return inventory, host.name, ifaces
        if scope.kind in ("vif", "pif"):
            finder = self.inspection.vif if scope.kind == "vif" else self.inspection.pif
            detail = finder(scope.target, scope.pool)
            inventory = self.inspection.gateways.get(detail.pool).inventory()
            iface = detail.interface
            return inventory, iface.label, [iface]
        gateway = self.inspection.gateway(scope.target)
        inventory = gateway.inventory()
        return inventory, gateway.name, [i for i in interfaces_in_scope(inventory, "pool", None) if _offloadable(i)]

    def plan(self, action: ChangeAction, modes: Sequence[str], scope: Scope) -> Plan:
        inventory, label, interfaces = self.resolve_scope(scope)
        plan = plan_change(inventory, action, modes, scope.kind, label, interfaces)
        gateway = self.inspection.gateways.get(inventory.pool)  # RBAC: may xenbot's account write these?
        denied = sorted({i.kind for i in plan.interfaces if gateway.may_write(i.kind) is False})
        notes = tuple(permission_note(kind, gateway.settings.username, inventory.pool) for kind in denied)
        return replace(plan, notes=plan.notes + notes) if notes else plan

    def replan(self, request: ChangeRequest) -> Plan:
        """The same request computed again from live state, for comparison with the approved plan."""
        if request.kind == "revert":
            written = self._written_values(request.parent_id or 0)
            inventory = self.inspection.gateway(request.pool).inventory()
            return plan_restore(inventory, written, request.scope_label)
        stored = Plan.from_json(request.plan)
        scope = Scope(request.scope_kind, request.plan.get("scope_target", request.scope_label), request.pool)  # type: ignore[arg-type]
        return self.plan(stored.action, stored.modes, scope)

    # -- request --------------------------------------------------------------------

    def request(
        self,
        *,
        requester: str,
        channel: str | None,
        action: ChangeAction,
        scope: Scope,
        modes_text: str | None,
        reason: str | None,
    ) -> Reply:
        kinds = {"vm": ["vif"], "vif": ["vif"], "pif": ["pif"], "host": ["pif"], "pool": ["pif"]}[scope.kind]
        try:
            modes = parse_modes(modes_text, kinds)  # type: ignore[arg-type]
        except ModeError as exc:
            raise ChangeError(str(exc)) from None
        plan = self.plan(action, modes, scope)
        if (refusal := lacks_permission(plan)) is not None:
            raise ChangeError(refusal)
        if not plan.interfaces:
            return render.nothing_to_do(plan)
        request = self.create_request(
            kind="offload",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=reason,
            scope_target=scope.target,
        )
        self.post_for_approval(request, plan)
        return render.request_posted(request, plan)

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

    # -- approve / reject / cancel ---------------------------------------------------

    def approve(self, approver: str, request_id: int) -> tuple[Reply, bool]:
        """Count one approval; returns the clicker's answer and whether the request is now approved."""
        now = self.clock()
        with self.sessions.begin() as session:
            request = self._load(session, request_id)
            if request.state == State.PENDING and now >= request.expires_at:
                self._expire(session, request, now)
                refused = "this request has expired; ask for it again"
                self._refuse(session, approver, request, "approve", refused)
                expired = True
            else:
                expired = False
                so_far = self.approvers_of(request.id, session)
                check = check_approval(
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
                if not check.decision.allowed:
                    self._refuse(session, approver, request, "approve", check.decision.reason)
                    refused = check.decision.reason
                else:
                    refused = ""
                    session.add(ChangeApproval(request_id=request.id, approver=approver, at=now))
                    session.flush()
                    audit.record(
                        session,
                        actor=approver,
                        action="change.approval",
                        target=f"change #{request.id}",
                        details={"approvals": [*so_far, approver], "required": self.slack.required_approvals},
                    )
                    if check.complete:
                        self._transition(session, request, State.PENDING, State.APPROVED, approver)
        if expired:
            self.refresh_message(request_id)
        if refused:
            return render.refusal(f"Not approved: {refused}."), False
        self.refresh_message(request_id)
        approved = State(request.state) is State.APPROVED
        return render.approval_recorded(request, approved), approved

    def reject(self, user: str, request_id: int) -> Reply:
        return self._close(user, request_id, State.REJECTED)

    def cancel(self, user: str, request_id: int) -> Reply:
        return self._close(user, request_id, State.CANCELLED)

    def _close(self, user: str, request_id: int, new: State) -> Reply:
        now = self.clock()
        verb = "reject" if new is State.REJECTED else "cancel"
        with self.sessions.begin() as session:
            request = self._load(session, request_id)
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

    # -- revert and activation requests -------------------------------------------------

    def request_revert(self, requester: str, channel: str | None, request_id: int) -> Reply:
        with self.sessions() as session:
            original = self._load(session, request_id)
        if original.state not in (State.APPLIED, State.PARTIALLY_FAILED, State.FAILED):
            raise ChangeError(f"change #{request_id} is {State(original.state).label}: only finished changes revert")
        written = self._written_values(request_id)
        if not written:
            raise ChangeError(f"change #{request_id} changed no interface; nothing to revert")
        inventory = self.inspection.gateway(original.pool).inventory()
        plan = plan_restore(inventory, written, f"revert of #{request_id} ({original.scope_label})")
        if not plan.interfaces:
            return render.nothing_to_do(plan)
        request = self.create_request(
            kind="revert",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=f"revert change #{request_id}",
            scope_target=original.pool,
            parent_id=request_id,
        )
        self.post_for_approval(request, plan)
        return render.request_posted(request, plan)

    def request_activation(self, requester: str, channel: str | None, request_id: int) -> Reply:
        with self.sessions() as session:
            original = self._load(session, request_id)
            pending = session.scalars(
                select(PendingActivation).where(PendingActivation.request_id == request_id)
            ).all()
        inventory = self.inspection.gateway(original.pool).inventory()
        plan = self._activation_plan(original, pending, inventory)
        if not plan.interfaces:
            raise ChangeError(f"change #{request_id} has nothing that xenbot can activate now")
        request = self.create_request(
            kind="activate",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=f"activate change #{request_id}",
            scope_target=original.pool,
            parent_id=request_id,
        )
        self.post_for_approval(request, plan, note=render.ACTIVATION_WARNING)
        return render.request_posted(request, plan)

    def _activation_plan(
        self, original: ChangeRequest, pending: Sequence[PendingActivation], inventory: PoolInventory
    ) -> Plan:
        """What activation would do *now*: the method is derived again from live state
        (a VM halted since the change needs nothing; one started since is already done)."""
        steps: list[InterfacePlan] = []
        notes: list[str] = []
        for row in pending:
            iface = inventory.interface(row.interface_uuid)
            if iface is None:
                notes.append(f"{row.label}: no longer exists")
                continue
            method = activation_for(iface, inventory)
            if method not in AUTOMATIC_ACTIVATIONS:
                notes.append(f"{row.label}: {ACTIVATION_TEXT.get(method, method)}")
                continue
            owner = iface.vm_ref if isinstance(iface, Vif) else iface.host_ref
            steps.append(
                InterfacePlan(inventory.pool, iface.kind, iface.ref, iface.uuid, iface.label, owner, (), method)
            )
        return Plan(
            "activate", (), inventory.pool, "pool", f"change #{original.id}", tuple(steps), 0, tuple(notes)
        )

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

    def _load(self, session: Session, request_id: int) -> ChangeRequest:
        request = session.get(ChangeRequest, request_id)
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

    def refresh_message(self, request_id: int) -> None:
        """Re-render the approval message from the database: state, approvers, and live buttons."""
        with self.sessions() as session:
            request = self._load(session, request_id)
            approvers = self.approvers_of(request_id, session)
        if request.message_channel and request.message_ts:
            plan = Plan.from_json(request.plan)
            reply = render.approval_message(request, plan, approvers, self.slack.required_approvals)
            try:
                self.messenger.update(request.message_channel, request.message_ts, reply)
            except Exception:
                log.exception("could not update the message of change #%s", request_id)


def _offloadable(iface: Interface) -> bool:
    """Under Open vSwitch (the default) ethtool keys on bond-master and VLAN PIFs reach no device:
    the physical member NICs carry the setting, so host- and pool-wide changes target those."""
    return iface.kind == "vif" or bool(getattr(iface, "physical", False))

