"""Offload changes behind approvals: request, approve, reject, cancel, expire, revert, activate.

Each use case is one short transaction that also writes its audit rows. State
moves only by compare-and-set (``UPDATE … WHERE state = :expected``): whoever
loses a race — a double click, a Slack retry, a second replica — changes
nothing and is told what happened instead. Applying is in
:mod:`bot.services.apply`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from bot.db.models import ChangeRequest, ChangeResult, PendingActivation
from bot.domain.activation import LEFT_OFF, LEFT_UNPLUGGED
from bot.domain.approvals import (
    State,
)
from bot.domain.changes import (
    ACTIVATION_KINDS,
    ACTIVATION_TEXT,
    ChangeAction,
    Plan,
    interfaces_in_scope,
    lacks_permission,
    permission_note,
    plan_activation,
    plan_change,
    plan_repair,
    plan_restore,
)
from bot.domain.model import Interface, Pif, PoolInventory, Vif
from bot.domain.offload import ModeError, parse_modes
from bot.render import changes as render
from bot.render.blocks import Reply
from bot.services.change_approvals import ChangeApprovals
from bot.services.change_store import CARD_GRACE, LATE_CARD_NOTE, ChangeError, Clock, Scope, utcnow

__all__ = ["CARD_GRACE", "LATE_CARD_NOTE", "ChangeError", "ChangeService", "Clock", "Scope", "utcnow"]

log = logging.getLogger(__name__)


class ChangeService(ChangeApprovals):
    """Planning and the requests people make; approvals and storage come from the base classes."""

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
        if (refusal := lacks_permission(plan)) is not None:
            raise ChangeError(refusal)
        if not plan.interfaces:
            return render.nothing_to_do(plan)
        return self._ask(
            kind="offload",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=reason,
            scope_target=scope.target,
        )

    # -- revert and activation requests -------------------------------------------------

    def _ask(self, *, plan: Plan, note: str | None = None, **request: Any) -> Reply:
        """Record a request, post its card for approval, and tell the asker where it is."""
        created = self.create_request(plan=plan, **request)
        self.post_for_approval(created, plan, note=note)
        return render.request_posted(created, plan)

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
        return self._ask(
            kind="revert",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=f"revert change #{request_id}",
            scope_target=original.pool,
            parent_id=request_id,
        )

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
        return self._ask(
            kind="activate",
            plan=plan,
            requester=requester,
            channel=channel,
            reason=f"activate change #{request_id}",
            scope_target=original.pool,
            parent_id=request_id,
            note=render.ACTIVATION_WARNING,
        )

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
        return self._ask(
            kind=kind,
            plan=plan,
            requester=requester,
            channel=channel,
            reason=f"{'start' if kind == 'start-vm' else 'plug'} {labels}, left off by activation #{activation_id}",
            scope_target=original.pool,
            parent_id=activation_id,
            note=render.REPAIR_NOTE,
        )


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
