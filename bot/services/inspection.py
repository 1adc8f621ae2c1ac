"""Read-only use cases: what ``xe pif-list`` / ``vif-param-list`` would say, for every pool.

Every answer is built from one inventory per pool (one ``get_all_records`` per
class the first time, then only what ``event.from`` reports changed; read in
parallel across pools), never one call per object, so a pool of thousands of
VIFs answers as fast as a small one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from bot.domain import names
from bot.domain.activation import nic_is_emulated
from bot.domain.model import Host, Interface, Pif, PoolInventory, Vif, Vm
from bot.domain.offload import OffloadSummary, summarise
from bot.xen.errors import XapiUnavailable, XenError
from bot.xen.gateway import Gateways, PoolGateway
from bot.xen.records import ref_or_none


@dataclass(frozen=True)
class PoolStatus:
    name: str
    url: str
    master_url: str | None
    error: str | None
    hosts: int = 0
    vms: int = 0
    master_name: str = ""
    # URL -> what that host answered when the master was last looked for (emergency mode, refused …)
    answers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VmList:
    rows: list[tuple[str, Vm, int]]  # pool, vm, vif count
    text: str | None
    pool: str | None
    unreachable: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VifList:
    pool: str
    vm: Vm
    vifs: list[Vif]
    pending: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PifList:
    rows: list[tuple[str, Pif]]
    host: Host | None
    pool: str | None
    unreachable: list[str] = field(default_factory=list)
    pending: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InterfaceDetail:
    """Every field of one VIF or PIF, with references shown as names like ``xe`` does."""

    pool: str
    interface: Interface
    params: list[tuple[str, str]]


@dataclass(frozen=True)
class OffloadStatus:
    scope: Literal["vm", "host", "pool"]
    label: str
    pool: str
    vifs: OffloadSummary | None
    pifs: OffloadSummary | None
    pending: int = 0
    no_device: int = 0  # VIFs of guests without PV drivers: no device honours their keys


Scope = Literal["vm", "host", "pool"]
T = TypeVar("T")


# Inspection answers may be this old: a burst of commands shares one read of the pool.
READ_CACHE_SECONDS = 2.0


def _nothing_pending(among: Collection[str] | None = None) -> Mapping[str, str]:
    return {}


class InspectionService:
    def __init__(
        self,
        gateways: Gateways,
        pending_activation: Callable[[Collection[str] | None], Mapping[str, str]] = _nothing_pending,
        max_age: float = READ_CACHE_SECONDS,
    ) -> None:
        self.gateways = gateways
        # How old a pool read may be; 0 for anything that plans a change (always live).
        self.max_age = max_age
        # Interface uuid → activation still needed (from the change records), shown beside the settings.
        self.pending_activation = pending_activation
        self._vm_index: (
            tuple[tuple[int, ...], list[PoolInventory], list[names.Candidate[tuple[PoolInventory, Vm]]]] | None
        ) = None

    # -- pools -----------------------------------------------------------------

    def pools(self) -> list[PoolStatus]:
        def status(gateway: PoolGateway) -> PoolStatus:
            try:
                inventory = gateway.inventory(max_age=self.max_age)
            except XenError as exc:
                return PoolStatus(
                    gateway.name, gateway.settings.url, None, str(exc), answers=dict(gateway.host_answers)
                )
            return PoolStatus(
                gateway.name,
                gateway.settings.url,
                gateway.master_url,
                None,
                hosts=len(inventory.hosts),
                vms=len(inventory.vms),
                master_name=inventory.master.name,
            )

        return self._each(status, list(self.gateways))

    # -- inventories across pools ---------------------------------------------

    def inventories(self, pool: str | None = None) -> tuple[list[PoolInventory], list[XenError]]:
        """Inventories of the selected pools; unreachable pools are reported, not fatal, unless all are."""
        targets = [self.gateway(pool)] if pool else list(self.gateways)
        if not targets:
            raise XapiUnavailable("(none)", "no pools are configured; add a [[pools]] entry to the config")

        def read(gateway: PoolGateway) -> PoolInventory | XenError:
            try:
                return gateway.inventory(max_age=self.max_age)
            except XenError as exc:
                return exc

        results = self._each(read, targets)
        inventories = [r for r in results if isinstance(r, PoolInventory)]
        errors = [r for r in results if isinstance(r, XenError)]
        if not inventories:
            raise errors[0]
        return inventories, errors

    def find_vm(self, query: str, pool: str | None = None) -> tuple[PoolInventory, Vm]:
        inventories, errors = self.inventories(pool)
        return self._resolve("VM", query, self._vm_candidates(inventories), errors)

    def _vm_candidates(self, inventories: list[PoolInventory]) -> list[names.Candidate[tuple[PoolInventory, Vm]]]:
        """Built once per set of inventory snapshots (they are shared for ``max_age``), not per command:
        on a pool of thousands of VMs this was most of the cost of ``/xen vifs``."""
        key = tuple(id(inv) for inv in inventories)
        cached = self._vm_index
        if cached is not None and cached[0] == key:
            return cached[2]
        candidates = [
            names.Candidate((inv, vm), vm.uuid, (vm.name,), self._display(vm.name, inv.pool, inventories))
            for inv in inventories
            for vm in inv.vms.values()
        ]
        # The snapshots are kept with the key, so their ids cannot be reused while it is cached.
        self._vm_index = (key, list(inventories), candidates)
        return candidates

    def find_host(self, query: str, pool: str | None = None) -> tuple[PoolInventory, Host]:
        inventories, errors = self.inventories(pool)
        candidates: list[names.Candidate[tuple[PoolInventory, Host]]] = [
            names.Candidate(
                (inv, host),
                host.uuid,
                (host.name, host.hostname, host.address),
                self._display(host.name, inv.pool, inventories),
            )
            for inv in inventories
            for host in inv.hosts.values()
        ]
        return self._resolve("host", query, candidates, errors)

    # -- commands ---------------------------------------------------------------

    def vms(self, pool: str | None, text: str | None) -> VmList:
        inventories, errors = self.inventories(pool)
        rows = [
            (inv.pool, vm, len(inv.vifs_of(vm)))
            for inv in inventories
            for vm in names.filter_by_text(
                inv.vms.values(),
                text,
                lambda v: (v.name, v.uuid, v.guest.os_label if v.guest else "", *(v.guest.ips if v.guest else ())),
            )
        ]
        rows.sort(key=lambda r: (r[1].name.lower(), r[0]))
        return VmList(rows, text, pool, [e.pool for e in errors])

    def vifs(self, vm_query: str, pool: str | None) -> VifList:
        inventory, vm = self.find_vm(vm_query, pool)
        vifs = inventory.vifs_of(vm)
        return VifList(inventory.pool, vm, vifs, self.pending_activation([v.uuid for v in vifs]))

    def vif(self, query: str, pool: str | None) -> InterfaceDetail:
        inventories, errors = self.inventories(pool)
        if ":" in query and not _looks_like_uuid(query):
            vm_part, _, device = query.rpartition(":")
            inventory, vm = self.find_vm(vm_part, pool)
            for vif in inventory.vifs_of(vm):
                if vif.device == device:
                    return self._detail(inventory, vif)
            devices = ", ".join(v.device for v in inventory.vifs_of(vm)) or "none"
            raise names.NotFound(f"VIF device on {vm.name}", device, [f"{vm.name}:{d}" for d in devices.split(", ")])
        candidates = [
            names.Candidate((inv, vif), vif.uuid, (vif.label,), f"{vif.label} ({inv.pool})")
            for inv in inventories
            for vif in inv.vifs.values()
        ]
        inventory, vif = self._resolve("VIF", query, candidates, errors)
        return self._detail(inventory, vif)

    def pifs(self, host_query: str | None, pool: str | None) -> PifList:
        if host_query:
            inventory, host = self.find_host(host_query, pool)
            pifs = [(inventory.pool, p) for p in inventory.pifs_of(host)]
            return PifList(pifs, host, inventory.pool, pending=self.pending_activation(None))
        inventories, errors = self.inventories(pool)
        rows = [
            (inv.pool, pif)
            for inv in inventories
            for host in sorted(inv.hosts.values(), key=lambda h: h.name.lower())
            for pif in inv.pifs_of(host)
        ]
        return PifList(rows, None, pool, [e.pool for e in errors], self.pending_activation(None))

    def pif(self, query: str, pool: str | None) -> InterfaceDetail:
        inventories, errors = self.inventories(pool)
        if ":" in query and not _looks_like_uuid(query):
            host_part, _, device = query.rpartition(":")
            inventory, host = self.find_host(host_part, pool)
            pifs = inventory.pifs_of(host)
            matches = [p for p in pifs if p.device == device]
            if len(matches) == 1:
                return self._detail(inventory, matches[0])
            if matches:  # VLANs share the device of their physical PIF
                raise names.Ambiguous(
                    "PIF", query, [f"{p.label} VLAN {p.vlan} ({p.uuid[:8]})" for p in matches]
                )
            raise names.NotFound(f"PIF on {host.name}", device, [p.label for p in pifs])
        candidates = [
            names.Candidate((inv, pif), pif.uuid, (pif.label,), f"{pif.label} ({inv.pool})")
            for inv in inventories
            for pif in inv.pifs.values()
        ]
        inventory, pif = self._resolve("PIF", query, candidates, errors)
        return self._detail(inventory, pif)

    def offload_status(self, scope: Scope, query: str) -> OffloadStatus:
        status = self._offload_status(scope, query)
        pending = self.pending_activation(None)
        uuids = {i.uuid for s in (status.vifs, status.pifs) if s for i in s.interfaces}
        return replace(status, pending=len(uuids & pending.keys()))

    def _offload_status(self, scope: Scope, query: str) -> OffloadStatus:
        if scope == "vm":
            inventory, vm = self.find_vm(query)
            vifs = inventory.vifs_of(vm)
            return OffloadStatus("vm", vm.name, inventory.pool, summarise(vifs), None,
                                 no_device=_no_device(inventory, vifs))
        if scope == "host":
            inventory, host = self.find_host(query)
            vifs = [v for vm in inventory.vms_on(host) for v in inventory.vifs_of(vm)]
            return OffloadStatus(
                "host", host.name, inventory.pool, summarise(vifs), summarise(inventory.pifs_of(host)),
                no_device=_no_device(inventory, vifs),
            )
        gateway = self.gateway(query)
        inventory = gateway.inventory(max_age=self.max_age)
        return OffloadStatus(
            "pool",
            gateway.name,
            gateway.name,
            summarise(inventory.vifs.values()),
            summarise(inventory.pifs.values()),
            no_device=_no_device(inventory, inventory.vifs.values()),
        )

    # -- helpers ------------------------------------------------------------------

    def gateway(self, name: str) -> PoolGateway:
        try:
            return self.gateways.get(name)
        except KeyError:
            suggestions = names.nearest(name, self.gateways.names()) or self.gateways.names()
            raise names.NotFound("pool", name, suggestions) from None

    @staticmethod
    def _display(name: str, pool: str, inventories: Sequence[PoolInventory]) -> str:
        return f"{name} ({pool})" if len(inventories) > 1 else name

    @staticmethod
    def _resolve(kind: str, query: str, candidates: list[names.Candidate[T]], errors: list[XenError]) -> T:
        try:
            return names.resolve(kind, query, candidates)
        except names.NotFound as exc:
            if not errors:
                raise
            # The object may live in a pool that did not answer: say so rather than "no such VM".
            unreachable = ", ".join(sorted({e.pool for e in errors}))
            raise names.NotFound(kind, query, [*exc.suggestions, f"(pools not answering: {unreachable})"]) from None

    def _each(self, fn: Any, gateways: list[PoolGateway]) -> list[Any]:
        if len(gateways) <= 1:
            return [fn(g) for g in gateways]
        with ThreadPoolExecutor(max_workers=min(8, len(gateways))) as executor:
            return list(executor.map(fn, gateways))

    def _detail(self, inventory: PoolInventory, interface: Interface) -> InterfaceDetail:
        return InterfaceDetail(inventory.pool, interface, _param_lines(inventory, interface))


def _looks_like_uuid(text: str) -> bool:
    return len(text) >= 32 and all(ch in "0123456789abcdefABCDEF-" for ch in text)


def _param_lines(inventory: PoolInventory, interface: Interface) -> list[tuple[str, str]]:
    """Field order and reference naming as in ``xe vif-param-list`` (references shown as names)."""
    params = dict(interface.params)
    lines: list[tuple[str, str]] = []
    first = ["uuid", "device", "MAC", "MTU"]
    for key in first + sorted(k for k in params if k not in first):
        if key not in params:
            continue
        lines.append((key, _format_value(inventory, key, params[key])))
    return lines


def _format_value(inventory: PoolInventory, key: str, value: object) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "(empty)"
    if isinstance(value, list | tuple):
        return "; ".join(_name_of(inventory, str(v)) for v in value) or "(empty)"
    text = str(value)
    if text.startswith("OpaqueRef:"):
        return _name_of(inventory, text)
    return text


def _name_of(inventory: PoolInventory, ref: str) -> str:
    if ref_or_none(ref) is None:
        return "<not in database>"
    for table in (inventory.vms, inventory.networks, inventory.hosts):
        obj: Any = table.get(ref)
        if obj is not None:
            return f"{obj.name} ({obj.uuid})"
    for table2 in (inventory.vifs, inventory.pifs):
        iface: Any = table2.get(ref)
        if iface is not None:
            return f"{iface.label} ({iface.uuid})"
    return ref


def _no_device(inventory: PoolInventory, vifs: Iterable[Vif]) -> int:
    """VIFs whose guest uses its emulated NIC: offload keys on them are in effect nowhere."""
    return sum(1 for v in vifs if (vm := inventory.vms.get(v.vm_ref)) is not None and nic_is_emulated(vm))
