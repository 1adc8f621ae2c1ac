"""Policies: set and remove them through approvals, check compliance, act on drift.

Setting or removing a policy is a change request like any other (kind
``policy`` / ``policy-remove``), so it is approved, audited and listed the same
way. Drift found by the watcher is reported once per distinct state
(``drift_report``); in *enforce* mode, interfaces that appeared after the
policy are fixed by a change attributed to the policy and its approvers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.db import audit
from bot.db.models import ChangeApproval, ChangeRequest, DriftReport, Policy
from bot.domain import names
from bot.domain.approvals import State
from bot.domain.changes import Plan, plan_change
from bot.domain.model import PoolInventory, Vif
from bot.domain.offload import ModeError, parse_modes
from bot.domain.policy import Compliance, Drift, PolicySpec, by_owner, compliance, covered, drift_of
from bot.render import policies as render
from bot.render.blocks import Reply
from bot.services.apply import ApplyService
from bot.services.changes import ChangeError, ChangeService
from bot.services.messenger import Messenger

log = logging.getLogger(__name__)


def spec_of(row: Policy) -> PolicySpec:
    return PolicySpec.from_json(row.spec)


class PolicyService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        changes: ChangeService,
        apply: ApplyService,
        messenger: Messenger,
        report_channel: str | None,
    ) -> None:
        self.sessions = sessions
        self.changes = changes
        self.apply = apply
        self.messenger = messenger
        self.report_channel = report_channel
        apply.finishers["policy"] = self._finish_set
        apply.finishers["policy-remove"] = self._finish_remove

    # -- requests -------------------------------------------------------------------

    def request_set(self, requester: str, channel: str | None, spec: PolicySpec) -> Reply:
        try:
            kinds = ["vif"] if spec.target == "vifs" else ["pif"]
            modes = parse_modes(",".join(spec.modes) if spec.modes else None, kinds)  # type: ignore[arg-type]
        except ModeError as exc:
            raise ChangeError(str(exc)) from None
        spec = PolicySpec(**{**asdict(spec), "modes": modes})
        inventory = self.changes.inspection.gateway(spec.pool).inventory()
        now = compliance(0, spec, inventory)
        note = f"Policy: {spec.describe()}. Today {now.complying} interfaces comply, {len(now.drifting)} differ."
        plan = Plan(spec.action, modes, spec.pool, "pool", f"policy for {spec.target}", (), 0, (note,))
        request = self.changes.create_request(
            kind="policy",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=spec.describe(),
            scope_target=spec.pool,
        )
        with self.sessions.begin() as session:
            row = session.get(ChangeRequest, request.id)
            assert row is not None
            row.plan = {**row.plan, "policy": asdict(spec)}
        self.changes.post_for_approval(request, plan)
        return render.policy_requested(request.id, spec)

    def request_remove(self, requester: str, channel: str | None, policy_id: int) -> Reply:
        row = self.active_policy(policy_id)
        spec = spec_of(row)
        plan = Plan(spec.action, spec.modes, spec.pool, "pool", f"remove policy #{policy_id}", (), 0,
                    (f"Remove policy #{policy_id}: {spec.describe()}",))
        request = self.changes.create_request(
            kind="policy-remove",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=f"remove policy #{policy_id}",
            scope_target=spec.pool,
        )
        with self.sessions.begin() as session:
            stored = session.get(ChangeRequest, request.id)
            assert stored is not None
            stored.plan = {**stored.plan, "policy_id": policy_id}
        self.changes.post_for_approval(request, plan)
        return render.policy_requested(request.id, spec, removal_of=policy_id)

    def save_from_change(self, user: str, request_id: int, mode: str = "report") -> Reply:
        """An approved pool- or host-wide change kept as a policy, with the change's approvers."""
        request, approvers, _results = self.changes.detail(request_id)
        allowed = user == request.requester or self.changes.access.may_approve(
            user, "", self.changes.members_of
        ).allowed
        if not allowed:
            return render.refusal("only the requester or an approver can save a change as a policy")
        wide = request.scope_kind in ("pool", "host") and request.action in ("off", "on")
        if request.kind != "offload" or not wide:
            return render.refusal("only pool- or host-wide offload off/on changes can become a policy")
        if request.state not in (State.APPLIED, State.PARTIALLY_FAILED):
            return render.refusal(f"change #{request_id} is {State(request.state).label}, not applied")
        rows = []
        for target in ("vifs", "pifs"):
            spec = PolicySpec(
                pool=request.pool,
                target=target,
                action=request.action,  # type: ignore[arg-type]
                modes=tuple(m for m in request.modes if target == "pifs" or m not in ("gro", "lro")),
                mode=mode,  # type: ignore[arg-type]
                host=request.scope_label if request.scope_kind == "host" else None,
            )
            rows.append(self._create_policy(spec, user, approvers, request_id))
        return render.policies_saved(rows)

    # -- finishing approved requests (called by ApplyService) ------------------------

    def _finish_set(self, request: ChangeRequest, actor: str) -> State:
        spec = PolicySpec.from_json(request.plan["policy"])
        approvers = self.changes.approvers_of(request.id)
        policy = self._create_policy(spec, request.requester, approvers, request.id)
        self._close(request, State.APPLIED)
        self.post_in_thread(request, render.policy_active(policy, spec))
        return State.APPLIED

    def _finish_remove(self, request: ChangeRequest, actor: str) -> State:
        policy_id = int(request.plan["policy_id"])
        with self.sessions.begin() as session:
            row = session.get(Policy, policy_id)
            if row is None or not row.active:
                outcome = State.FAILED
            else:
                row.active = False
                row.removed_at = self.changes.clock()
                session.execute(delete(DriftReport).where(DriftReport.policy_id == policy_id))
                audit.record(session, actor=actor, action="policy.removed", target=f"policy #{policy_id}",
                             details={"request": request.id})
                outcome = State.APPLIED
        self._close(request, outcome)
        self.post_in_thread(request, render.policy_removed(policy_id, outcome))
        return outcome

    def _create_policy(self, spec: PolicySpec, creator: str, approvers: Sequence[str], request_id: int) -> Policy:
        with self.sessions.begin() as session:
            row = Policy(
                pool=spec.pool,
                spec=asdict(spec),
                active=True,
                created_by=creator,
                approvers=list(approvers),
                request_id=request_id,
                report_channel=self.report_channel,
                created_at=self.changes.clock(),
            )
            session.add(row)
            session.flush()
            audit.record(
                session,
                actor=creator,
                action="policy.created",
                target=f"policy #{row.id}",
                details={"spec": asdict(spec), "approvers": list(approvers), "request": request_id},
            )
        return row

    def post_in_thread(self, request: ChangeRequest, reply: Reply) -> None:
        self.apply.post_in_thread(request, reply)

    def _close(self, request: ChangeRequest, outcome: State) -> None:
        with self.sessions.begin() as session:
            row = session.get(ChangeRequest, request.id)
            assert row is not None
            self.changes.transition(session, row, (State.APPLYING,), outcome, "system")
        self.changes.refresh_message(request.id)

    # -- reading ---------------------------------------------------------------------

    def active(self, pool: str | None = None) -> list[Policy]:
        with self.sessions() as session:
            query = select(Policy).where(Policy.active.is_(True)).order_by(Policy.id)
            if pool:
                query = query.where(Policy.pool == pool)
            return list(session.scalars(query))

    def all(self) -> list[Policy]:
        with self.sessions() as session:
            return list(session.scalars(select(Policy).order_by(Policy.id)))

    def active_policy(self, policy_id: int) -> Policy:
        with self.sessions() as session:
            row = session.get(Policy, policy_id)
        if row is None or not row.active:
            known = [f"#{p.id}" for p in self.active()]
            raise names.NotFound("active policy", f"#{policy_id}", known)
        return row

    def show(self, policy_id: int) -> tuple[Policy, Compliance]:
        row = self.active_policy(policy_id)
        inventory = self.changes.inspection.gateway(row.pool).inventory()
        return row, compliance(row.id, spec_of(row), inventory, self.changes.pending_activation())

    def compliance_report(self, pool: str | None = None) -> list[tuple[Policy, Compliance]]:
        report = []
        pending = self.changes.pending_activation()
        inventories: dict[str, PoolInventory] = {}
        for row in self.active(pool):
            if row.pool not in inventories:
                inventories[row.pool] = self.changes.inspection.gateway(row.pool).inventory()
            report.append((row, compliance(row.id, spec_of(row), inventories[row.pool], pending)))
        return report

    # -- drift (called by the watcher) -------------------------------------------------------

    def on_changes(
        self,
        pool: str,
        inventory: PoolInventory,
        affected: Iterable[str] | None,
        new: Iterable[str] = (),
        new_vms: Iterable[str] = (),
    ) -> list[Drift]:
        """Evaluate drift for the affected interfaces (None: all of them, after a gap); act once."""
        policies = self.active(pool)
        if not policies:
            return []
        wanted = None if affected is None else set(affected)
        new_set, new_vm_set = set(new), set(new_vms)
        reported: list[Drift] = []
        for row in policies:
            spec = spec_of(row)
            interfaces, _ = covered(spec, inventory)
            found = []
            in_scope = set()
            for iface in interfaces:
                if wanted is not None and iface.uuid not in wanted:
                    continue
                in_scope.add(iface.uuid)
                drift = drift_of(row.id, spec, iface, new=iface.uuid in new_set)
                if drift is not None:
                    found.append(drift)
            fresh = self._unreported(row, found, in_scope)
            if not fresh:
                continue
            enforce = [d for d in fresh if spec.mode == "enforce" and d.new]
            report = [d for d in fresh if d not in enforce]
            if enforce:
                self._enforce(row, spec, inventory, enforce, new_vm_set)
            if report:
                self._report(row, spec, report)
            reported += fresh
        return reported

    def _unreported(self, row: Policy, found: list[Drift], checked: set[str]) -> list[Drift]:
        """Drift not reported yet in this exact state; forget reports for interfaces that now comply."""
        now = self.changes.clock()
        drifting = {d.interface.uuid for d in found}
        fresh: list[Drift] = []
        with self.sessions.begin() as session:
            known = {
                r.interface_uuid: r
                for r in session.scalars(select(DriftReport).where(DriftReport.policy_id == row.id))
            }
            healed = [u for u in checked if u in known and u not in drifting]
            if healed:
                session.execute(
                    delete(DriftReport).where(DriftReport.policy_id == row.id, DriftReport.interface_uuid.in_(healed))
                )
            for drift in found:
                previous = known.get(drift.interface.uuid)
                if previous is not None and previous.signature == drift.signature:
                    continue
                if previous is None:
                    session.add(
                        DriftReport(
                            policy_id=row.id,
                            interface_uuid=drift.interface.uuid,
                            signature=drift.signature,
                            label=drift.interface.label,
                            reported_at=now,
                        )
                    )
                else:
                    session.execute(
                        update(DriftReport)
                        .where(DriftReport.policy_id == row.id, DriftReport.interface_uuid == drift.interface.uuid)
                        .values(signature=drift.signature, reported_at=now)
                    )
                fresh.append(drift)
        return fresh

    def _report(self, row: Policy, spec: PolicySpec, drifts: list[Drift]) -> None:
        channel = row.report_channel or self.report_channel or self.changes.slack.approvals_channel
        with self.sessions.begin() as session:
            audit.record(
                session,
                actor=f"policy:{row.id}",
                action="policy.drift",
                target=f"policy #{row.id}",
                details={"interfaces": [{"label": d.interface.label, "uuid": d.interface.uuid,
                                         "differences": [list(x) for x in d.differences], "new": d.new}
                                        for d in drifts]},
            )
        if channel:
            self.messenger.post(channel, render.drift_message(row.id, spec, by_owner(drifts)))

    def _enforce(
        self, row: Policy, spec: PolicySpec, inventory: PoolInventory, drifts: list[Drift], new_vms: set[str]
    ) -> None:
        """New interfaces get the policy at once: a change by ``policy:ID`` approved by its approvers."""
        groups: dict[tuple[str, str], list[Drift]] = {}
        for drift in drifts:
            iface = drift.interface
            if isinstance(iface, Vif) and iface.vm_ref in new_vms:
                groups.setdefault(("vm", iface.vm_ref), []).append(drift)
            else:
                groups.setdefault((iface.kind, iface.uuid), []).append(drift)
        for (scope_kind, _key), members in groups.items():
            interfaces = [d.interface for d in members]
            label = members[0].interface.vm_name if scope_kind == "vm" else members[0].interface.label  # type: ignore[union-attr]
            plan = plan_change(inventory, spec.action, spec.modes, scope_kind, label, interfaces)  # type: ignore[arg-type]
            if not plan.interfaces:
                continue
            target = members[0].interface.uuid if scope_kind != "vm" else label
            request_id = self._pre_approved(row, plan, target)
            final = self.apply.execute(request_id, f"policy:{row.id}")
            channel = row.report_channel or self.report_channel or self.changes.slack.approvals_channel
            if channel:
                self.messenger.post(channel, render.enforced(row.id, spec, plan, request_id, final))

    def _pre_approved(self, row: Policy, plan: Plan, target: str) -> int:
        request = self.changes.create_request(
            kind="offload",
            plan=plan,
            requester=f"policy:{row.id}",
            channel=row.report_channel or self.report_channel,
            reason=f"enforcing policy #{row.id} on new interfaces",
            scope_target=target,
        )
        now = self.changes.clock()
        with self.sessions.begin() as session:
            stored = session.get(ChangeRequest, request.id)
            assert stored is not None
            for approver in row.approvers or [row.created_by]:
                session.add(ChangeApproval(request_id=request.id, approver=approver, at=now))
            self.changes.transition(session, stored, (State.PENDING,), State.APPROVED, f"policy:{row.id}")
        return request.id


def policy_spec_from(options: dict[str, str], target: str, default_report: bool = True) -> PolicySpec:
    """``/xen policy set pool=P vifs modes=... [action=off] [mode=enforce] [exclude=a*,b] [exclude_tags=x]``."""
    modes = tuple(m for m in options.get("modes", "").replace(" ", ",").split(",") if m)
    return PolicySpec(
        pool=options["pool"],
        target=target,  # type: ignore[arg-type]
        action=options.get("action", "off"),  # type: ignore[arg-type]
        modes=modes,
        mode=options.get("mode", "report" if default_report else "enforce"),  # type: ignore[arg-type]
        exclude_names=tuple(x for x in options.get("exclude", "").split(",") if x),
        exclude_tags=tuple(x for x in options.get("exclude_tags", "").split(",") if x),
        host=options.get("host"),
    )

