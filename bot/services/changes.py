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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.db import audit
from bot.db.models import ChangeApproval, ChangeRequest, ChangeResult, PendingActivation
from bot.domain import names
from bot.domain.access import AccessPolicy, MembersOf
from bot.domain.activation import LEFT_OFF, LEFT_UNPLUGGED, stranded_errors
from bot.domain.approvals import (
    ApprovalCheck,
    State,
    check_approval,
    check_transition,
    missing_approvals,
    outcome,
)
from bot.domain.changes import (
    ACTIVATION_KINDS,
    ACTIVATION_TEXT,
    ChangeAction,
    Plan,
    ScopeKind,
    interfaces_in_scope,
    plan_activation,
    plan_change,
    plan_repair,
    plan_restore,
)
from bot.domain.model import Interface, Pif, PoolInventory, Vif
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
        return plan_change(inventory, action, modes, scope.kind, label, interfaces)

    def replan(self, request: ChangeRequest) -> Plan:
        """The same request computed again from live state, for comparison with the approved plan.

        The scope is found again from the approved interfaces' uuids, never from the name typed
        when it was requested: a VM renamed since is still the same VM (its VIFs keep their uuids
        and their VM), and a new VM that took the old name is not it. A target whose interfaces
        are all gone gives an empty plan (the request goes stale), not a "no VM matches" error."""
        if request.kind == "revert":
            written = self._written_values(request.parent_id or 0)
            inventory = self.inspection.gateway(request.pool).inventory()
            return plan_restore(inventory, written, request.scope_label)
        stored = Plan.from_json(request.plan)
        inventory = self.inspection.gateway(request.pool).inventory()
        found = _scope_again(inventory, stored)
        if found is None:
            note = f"{stored.scope_kind} {stored.scope_label} no longer exists"
            return replace(stored, interfaces=(), unchanged=0, notes=(note,))
        label, interfaces = found
        return plan_change(inventory, stored.action, stored.modes, stored.scope_kind, label, interfaces)

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
            # What the change's results said about taking effect (for "nothing to activate" answers).
            methods = set(session.scalars(
                select(ChangeResult.activation).where(ChangeResult.request_id == request_id)
            ))
        inventory = self.inspection.gateway(original.pool).inventory()
        plan = plan_activation(original.id, [(r.interface_uuid, r.label) for r in pending], inventory)
        if not plan.interfaces:
            notes = list(plan.notes) or [ACTIVATION_TEXT[m] for m in sorted(methods) if m in ACTIVATION_TEXT]
            why = "; ".join(notes[:5]) + (" …" if len(notes) > 5 else "")
            raise ChangeError(
                f"change #{request_id} has nothing that xenbot can activate now" + (f": {why}" if why else "")
            )
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

    def request_repair(self, requester: str, channel: str | None, activation_id: int, kind: str) -> Reply:
        """Ask (through the usual approval) to start the VMs, or plug the VIFs, that an
        activation left off. Planned from live state: what is back already is not asked for,
        and a VM that blocks ``start`` is not offered (XAPI would answer OPERATION_BLOCKED)."""
        prefix = LEFT_OFF if kind == "start-vm" else LEFT_UNPLUGGED
        with self.sessions() as session:
            original = self._load(session, activation_id)
            uuids = list(
                session.scalars(
                    select(ChangeResult.interface_uuid).where(
                        ChangeResult.request_id == activation_id, ChangeResult.error.startswith(prefix)
                    )
                )
            )
        what = "no VM off" if kind == "start-vm" else "no VIF unplugged"
        if original.kind not in ACTIVATION_KINDS or not uuids:
            raise ChangeError(f"change #{activation_id} left {what}; nothing to put back")
        inventory = self.inspection.gateway(original.pool).inventory()
        plan = plan_repair(kind, uuids, inventory)
        if not plan.interfaces:
            back = "; ".join(plan.notes) or ("the VM is not halted any more" if kind == "start-vm" else
                                             "the VIF is plugged again, or its VM is not running")
            raise ChangeError(f"nothing to ask for: {back}")
        labels = plan.scope_label
        request = self.create_request(
            kind=kind,
            plan=plan,
            requester=requester,
            channel=channel,
            reason=f"{'start' if kind == 'start-vm' else 'plug'} {labels}, left off by activation #{activation_id}",
            scope_target=original.pool,
            parent_id=activation_id,
        )
        self.post_for_approval(request, plan, note=render.REPAIR_NOTE)
        return render.request_posted(request, plan)

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


def _offloadable(iface: Interface) -> bool:
    """Under Open vSwitch (the default) ethtool keys on bond-master and VLAN PIFs reach no device:
    the physical member NICs carry the setting, so host- and pool-wide changes target those."""
    return iface.kind == "vif" or bool(getattr(iface, "physical", False))



def _scope_again(inventory: PoolInventory, approved: Plan) -> tuple[str, list[Interface]] | None:
    """The approved scope's label and interfaces now, found by the approved interfaces' uuids.

    A VIF's VM and a PIF's host never change (both are ``StaticRO`` fields, set when XAPI creates
    the object: xen-api ocaml/idl/datamodel.ml, VIF "VM" and PIF "host"), so any approved
    interface still there leads to its VM or host whatever it is called now. None
    when none is left: the VM or host was destroyed, or all its approved interfaces were."""
    alive = [i for i in (inventory.interface(p.uuid) for p in approved.interfaces) if i is not None]
    kind = approved.scope_kind
    if kind == "pool":
        return inventory.pool, [i for i in interfaces_in_scope(inventory, "pool", None) if _offloadable(i)]
    if kind in ("vif", "pif"):
        return (alive[0].label, alive[:1]) if alive else None
    if kind == "vm":
        vms = [inventory.vms[i.vm_ref] for i in alive if isinstance(i, Vif) and i.vm_ref in inventory.vms]
        return (vms[0].name, interfaces_in_scope(inventory, "vm", vms[0])) if vms else None
    hosts = [inventory.hosts[i.host_ref] for i in alive if isinstance(i, Pif) and i.host_ref in inventory.hosts]
    if not hosts:
        # Only VIFs were approved (the host's PIFs were already as asked). Their VMs may have
        # migrated since, so they do not say which host was meant; its name (hosts are seldom
        # renamed) does. No host of that name: gone, and the request goes stale.
        hosts = [h for h in inventory.hosts.values() if h.name == approved.scope_label]
    if not hosts:
        return None
    host = hosts[0]
    return host.name, [i for i in interfaces_in_scope(inventory, "host", host) if _offloadable(i)]
