"""The offload form and the "Explain with xenbot" message shortcut, as use cases.

The form is only another way to type ``/xen offload off|on|reset …``: what it submits goes
through :meth:`ChangeService.plan` for the summary and :meth:`ChangeService.request` for the
request, so the approval flow and the audit rows are the ones the command produces. Searching
targets reads the same short-lived inventory cache as ``/xen vms``, so a person typing does not
cost a pool read per keystroke.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bot.domain import names
from bot.domain.access import AccessPolicy, Decision, MembersOf
from bot.domain.changes import Plan
from bot.domain.model import PoolInventory, Vm
from bot.domain.offload import PIF_MODES, VIF_MODES
from bot.domain.policy import PolicySpec
from bot.render import forms as render
from bot.render.alerts import diagnosis_reply, host_alert
from bot.render.blocks import Reply
from bot.render.changes import refusal
from bot.services import alerts as alert_service
from bot.services.alerts import AlertService
from bot.services.changes import ChangeError, ChangeService, Scope
from bot.services.inspection import InspectionService
from bot.services.policies import PolicyService
from bot.xen.errors import XenError

log = logging.getLogger(__name__)

ScopeKind = Literal["vm", "host", "pool", "vif", "pif"]
SCOPE_KINDS: tuple[ScopeKind, ...] = ("vm", "host", "pool", "vif", "pif")
ACTIONS = ("off", "on", "reset")
MAX_OPTIONS = 100  # Slack shows at most 100 options from an external source
MAX_REASON = 500
# Names change rarely, and a person types several keystrokes a second: the search may use a pool
# read this old, so the options (answered while Slack waits) seldom wait on XAPI. Plans read live.
SEARCH_MAX_AGE = 30.0


def modes_for(kind: str) -> tuple[str, ...]:
    """``gro``/``lro`` exist only on PIFs: a host, pool or PIF scope writes PIF keys."""
    return PIF_MODES if kind in ("pif", "host", "pool") else VIF_MODES


def offered_modes(kind: str) -> tuple[str, ...]:
    """Modes the form offers: gro/lro only for a PIF scope, as the issue asks."""
    return PIF_MODES if kind == "pif" else VIF_MODES


@dataclass(frozen=True)
class OffloadForm:
    """What a person filled in; ``target`` is the picked option's value (a uuid or a pool name)."""

    pool: str
    kind: str
    target: str
    target_label: str
    modes: tuple[str, ...]
    action: str
    reason: str | None

    def problems(self) -> dict[str, str]:
        """Field → what is wrong with it, for ``response_action: errors``; no I/O."""
        errors: dict[str, str] = {}
        if self.kind not in SCOPE_KINDS:
            errors[render.SCOPE_BLOCK] = "Pick what to change: a VM, host, pool, VIF or PIF."
        if not self.target:
            errors[render.target_block(self.kind)] = "Pick the target from the list (type part of its name)."
        elif not self.target.startswith(f"{self.kind}:"):
            errors[render.target_block(self.kind)] = f"That target is not a {self.kind.upper()}; pick it again."
        if self.action not in ACTIONS:
            errors[render.ACTION_BLOCK] = "Choose off, on or reset."
        unknown = [m for m in self.modes if m not in offered_modes(self.kind)]
        if unknown:
            errors[render.modes_block(self.kind)] = f"{', '.join(unknown)} cannot be set on a {self.kind.upper()}."
        elif not self.modes:
            errors[render.modes_block(self.kind)] = "Tick at least one mode."
        if self.reason and len(self.reason) > MAX_REASON:
            errors[render.REASON_BLOCK] = f"Keep the reason under {MAX_REASON} characters."
        return errors

    def scope(self) -> Scope:
        _, _, ident = self.target.partition(":")
        return Scope(self.kind, ident, None if self.kind == "pool" else self.pool)  # type: ignore[arg-type]

    def metadata(self) -> dict[str, Any]:
        return {"pool": self.pool, "kind": self.kind, "target": self.target, "label": self.target_label,
                "modes": list(self.modes), "action": self.action, "reason": self.reason}

    @staticmethod
    def from_metadata(data: Mapping[str, Any]) -> OffloadForm:
        return OffloadForm(str(data.get("pool", "")), str(data.get("kind", "")), str(data.get("target", "")),
                           str(data.get("label", "")), tuple(str(m) for m in data.get("modes", ())),
                           str(data.get("action", "")), data.get("reason") or None)


@dataclass(frozen=True)
class PolicyForm:
    """``/xen policy set`` as the policy form submitted it."""

    pool: str
    target: str
    modes: tuple[str, ...]
    action: str
    mode: str
    exclude_names: tuple[str, ...]
    exclude_tags: tuple[str, ...]
    host: str | None

    def problems(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.target not in ("vifs", "pifs"):
            errors[render.POLICY_TARGET] = "Choose VIFs or PIFs."
        if not self.modes:
            errors[render.modes_block("pif")] = "Tick at least one mode."
        elif self.target == "vifs" and set(self.modes) - set(VIF_MODES):
            wrong = ", ".join(sorted(set(self.modes) - set(VIF_MODES)))
            errors[render.modes_block("pif")] = f"{wrong} exist only on PIFs; untick them for VIFs."
        if self.action not in ("off", "on"):
            errors[render.ACTION_BLOCK] = "Choose off or on."
        if self.mode not in ("report", "enforce"):
            errors[render.POLICY_MODE] = "Choose what happens when an interface differs."
        return errors

    def spec(self) -> PolicySpec:
        return PolicySpec(self.pool, self.target, self.action, self.modes, self.mode,  # type: ignore[arg-type]
                          self.exclude_names, self.exclude_tags, self.host)


@dataclass
class FormService:
    changes: ChangeService
    alerts: AlertService
    access: AccessPolicy
    members_of: MembersOf
    policies: PolicyService
    pools: list[str] = field(default_factory=list)
    _search: InspectionService | None = field(default=None, repr=False)

    # -- who may use them ------------------------------------------------------------------

    def may_use(self, user: str) -> Decision:
        """The operator rule of ``/xen``. Forms and shortcuts have no channel (a modal, a private
        answer), so the channel list does not apply: nothing is posted where it is not allowed.
        What a request then posts goes to the approvals channel, as from the command."""
        channel = self.access.allowed_channels[0] if self.access.allowed_channels else None
        return self.access.may_operate(user, channel, self.members_of)

    # -- the form ------------------------------------------------------------------------

    def new_form(self, pool: str | None = None, kind: str = "vm") -> dict[str, Any]:
        return render.offload_form(self.pools, pool or (self.pools[0] if self.pools else ""), kind)

    def search(self, pool: str | None, kind: str, typed: str) -> list[tuple[str, str]]:
        """(label, value) pairs of live inventory matching ``typed``; values are ``kind:uuid``."""
        try:
            inventories, _ = self._searcher().inventories(pool or None) if kind != "pool" else ([], [])
        except XenError as exc:
            log.info("target search in %s: %s", pool, exc)
            return []
        needle = typed.strip().lower()
        found: list[tuple[str, str]] = []
        if kind == "pool":
            found = [(p, f"pool:{p}") for p in self.pools if needle in p.lower()]
        for inventory in inventories:
            found += _matches(inventory, kind, needle)
            if len(found) >= MAX_OPTIONS:
                break
        return sorted(found)[:MAX_OPTIONS]

    def _searcher(self) -> InspectionService:
        if self._search is None:
            self._search = InspectionService(self.changes.inspection.gateways, max_age=SEARCH_MAX_AGE)
        return self._search

    def plan(self, form: OffloadForm) -> Plan:
        """The plan the command would show; raises what the command would answer with."""
        return self.changes.plan(form.action, _modes(form), form.scope())  # type: ignore[arg-type]

    def request(self, user: str, form: OffloadForm) -> Reply:
        """``/xen offload <action> <scope> modes=… reason=…``, made from the form: the same request."""
        try:
            return self.changes.request(requester=user, channel=None, action=form.action,  # type: ignore[arg-type]
                                        scope=form.scope(), modes_text=",".join(_modes(form)), reason=form.reason)
        except ChangeError as exc:
            return refusal(str(exc))

    # -- the policy form ---------------------------------------------------------------------

    def new_policy_form(self) -> dict[str, Any]:
        return render.policy_form(self.pools, self.pools[0] if self.pools else "")

    def request_policy(self, user: str, form: PolicyForm) -> Reply:
        """``/xen policy set …`` from the form: the same service, the same approval and audit."""
        try:
            pool = self.changes.inspection.gateway(form.pool).name
            return self.policies.request_set(user, None, replace(form.spec(), pool=pool))
        except ChangeError as exc:
            return refusal(str(exc))

    # -- the message shortcut ------------------------------------------------------------------

    def explain_message(self, message: Mapping[str, Any]) -> Reply:
        """The alert parser on any message, then the diagnosis ``/xen explain`` gives; or what was missing.

        The one call into the alert parser: through :mod:`bot.services.alerts`, whatever the
        parser's own package layout becomes."""
        # bot.services.alerts is the alert parser's public entry while bot/domain/alerts becomes a package.
        alert = alert_service.parse_alert(message)  # type: ignore[attr-defined]
        if alert is None:
            return render.nothing_recognised()
        try:
            inventory, subject = self.alerts.find(alert.target_ip or alert.target, alert.target)
        except names.NotFound as exc:
            return render.target_not_found(alert.target, str(exc))
        except XenError as exc:
            return render.target_not_found(alert.target, f"the pools did not answer ({exc})")
        if not isinstance(subject, Vm):
            return render.explained(host_alert(alert, inventory, subject), None)
        diagnosis = self.alerts.diagnose_vm(inventory, subject, alert)
        return render.explained(diagnosis_reply(inventory.pool, subject, alert, diagnosis),
                                f"explain {subject.uuid} pool={inventory.pool}")


def _modes(form: OffloadForm) -> tuple[str, ...]:
    return form.modes


def _matches(inventory: PoolInventory, kind: str, needle: str) -> list[tuple[str, str]]:
    pool = inventory.pool
    if kind == "vm":
        return [(f"{vm.name} ({pool})", f"vm:{vm.uuid}") for vm in inventory.vms.values()
                if needle in vm.name.lower() or vm.uuid.startswith(needle)]
    if kind == "host":
        return [(f"{h.name} ({pool})", f"host:{h.uuid}") for h in inventory.hosts.values()
                if needle in h.name.lower() or needle in h.address]
    if kind == "vif":
        return [(f"{v.label} {v.network_name}", f"vif:{v.uuid}") for v in inventory.vifs.values()
                if needle in v.label.lower() or needle in v.network_name.lower() or v.uuid.startswith(needle)]
    return [(f"{p.label} {p.network_name}", f"pif:{p.uuid}") for p in inventory.pifs.values()
            if needle in p.label.lower() or needle in p.network_name.lower() or p.uuid.startswith(needle)]
