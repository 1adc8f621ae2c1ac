"""Evidence → verdict: why a VM's NICs report discards, told only from what is known.

The story this exists for: monitoring reported many discards on a VM, exactly
equal for Rx and Tx; the team turned off every offload on every VIF and PIF,
which changed nothing, and days later learned that the Citrix PV Ethernet
driver on Windows Server 2008 / Vista / 7 reports such discards to the OS
(the 2003 / XP driver does not) and nothing was wrong. xenbot should say that
on the first day — and, just as important, say "unknown" instead of inventing
a cause when the evidence does not fit anything it knows.

So the knowledge lives in data (``bot/domain/rules/builtin.toml``, format in
``bot/domain/rules/README.md``) that operators can extend or override without
a release, and the engine is small: facts are derived from :class:`Evidence`,
each rule's ``when`` conditions are tested against them, the highest priority
match wins, and its explanation is filled from the facts. A condition on a
fact that is unknown never holds, and a placeholder whose fact is unknown
reads "unknown": the bot never fills a gap with a guess.

Pure: no Slack, XAPI or database; the only I/O is reading the rule files.
"""

from __future__ import annotations

import functools
import math
import re
import string
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from bot.domain.activation import nic_is_emulated
from bot.domain.alerts import Alert
from bot.domain.model import PoolInventory, Vm
from bot.domain.offload import PIF_MODES, VIF_MODES, Setting, configured, is_effective

Confidence = Literal["low", "medium", "high"]
CONFIDENCES: Final[tuple[Confidence, ...]] = ("low", "medium", "high")

GuestFamily = Literal[
    "windows-2003", "windows-2008", "windows-modern", "windows-other", "freebsd", "linux", "unknown"
]  # fmt: skip
GUEST_FAMILIES: Final[tuple[GuestFamily, ...]] = (
    "windows-2003", "windows-2008", "windows-modern", "windows-other", "freebsd", "linux", "unknown"
)  # fmt: skip

# The buttons and hints the bot knows how to offer; a rule naming anything else is refused at load time.
ACTION_CODES: Final = frozenset(
    {"mute", "show_vifs", "disable_offload", "check_network", "install_pv_drivers", "activate_pending"}
)
DEFAULT_ACTION_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "mute": "Mute these alerts here",
        "show_vifs": "Show the VIFs",
        "disable_offload": "Turn offloading off",
        "check_network": "Check the network path",
        "install_pv_drivers": "Install the PV drivers",
        "activate_pending": "Activate the pending change",
    }
)

UNKNOWN: Final = "unknown"

# --------------------------------------------------------------------------------------------
# Guest family
# --------------------------------------------------------------------------------------------

_WIN_2003 = re.compile(r"\bserver 2003\b|\bwindows xp\b|\bxp professional\b|\bwindows 2003\b")
# 2008 and 2008 R2, Vista, 7 — and the other NT 6.0/6.1 products (SBS / Home / MultiPoint Server 2011, Embedded 7).
_WIN_2008 = re.compile(
    r"\bserver 2008\b|\bwindows 2008\b|\bvista\b|\bwindows (?:embedded (?:standard |posready )?)?7\b|\bthin pc\b"
    r"|\bserver 2011\b"
)
_WIN_MODERN = re.compile(r"\bserver 20(?:1[2-9]|[2-9]\d)\b|\bwindows (?:8(?:\.1)?|10|11)\b")
_LINUX_DISTROS: Final = frozenset(
    {
        "linux", "ubuntu", "debian", "centos", "rhel", "redhat", "red hat", "fedora", "sles", "suse", "opensuse",
        "oracle", "oel", "ol", "rocky", "almalinux", "alma", "alpine", "arch", "gentoo", "amazon", "coreos",
        "kali", "mint", "scientific", "cloudlinux", "photon", "nixos", "void", "slackware", "mageia", "xenserver",
        "xcp-ng", "neokylin", "turbo", "asianux", "yinhe", "kylin",
    }
)  # fmt: skip
_FREEBSD = re.compile(r"\b(?:freebsd|pfsense|opnsense|truenas core|freenas|hardenedbsd)\b")


def _int(text: str) -> int | None:
    try:
        return int(str(text).strip())
    except ValueError:
        return None


def guest_family(os_name: str, distro: str = "", major: str = "", minor: str = "") -> GuestFamily:
    """Which driver family a guest has, from what its agent reports in ``os_version``.

    The name decides first (Windows agents send e.g.
    ``Microsoft Windows Server 2008 R2 Standard |C:\\Windows|\\Device\\Harddisk0\\Partition2``);
    when it does not, a Windows guest's NT version does: 5.1/5.2 are XP/2003,
    6.0 is Vista/2008, 6.1 is 7 *and* 2008 R2 — one PV driver generation —,
    6.2 and later are 8/2012 onwards. A Windows whose generation cannot be
    told is ``windows-other``, never a guess.
    """
    name = (os_name or "").split("|", 1)[0].strip().lower()
    dist = (distro or "").strip().lower()
    if _FREEBSD.search(name) or _FREEBSD.search(dist):
        return "freebsd"
    if "windows" in name or dist.startswith(("windows", "win")) or name.startswith("microsoft"):
        if _WIN_2003.search(name):
            return "windows-2003"
        if _WIN_2008.search(name):
            return "windows-2008"
        if _WIN_MODERN.search(name):
            return "windows-modern"
        nt = (_int(major), _int(minor))
        if nt[0] == 5 and nt[1] in (1, 2):
            return "windows-2003"
        if nt[0] == 6 and nt[1] in (0, 1):
            return "windows-2008"
        if (nt[0] == 6 and nt[1] is not None and nt[1] >= 2) or (nt[0] is not None and nt[0] >= 10):
            return "windows-modern"
        return "windows-other"
    words = set(re.split(r"[^a-z0-9\-]+", name))
    if dist in _LINUX_DISTROS or "linux" in name or words & _LINUX_DISTROS or "red hat" in name:
        return "linux"
    return "unknown"


# --------------------------------------------------------------------------------------------
# Evidence
# --------------------------------------------------------------------------------------------


def _all_default(modes: Sequence[str]) -> Mapping[str, Setting]:
    return MappingProxyType(dict.fromkeys(modes, Setting.DEFAULT))


def _vif_defaults() -> Mapping[str, Setting]:
    return _all_default(VIF_MODES)


def _pif_defaults() -> Mapping[str, Setting]:
    return _all_default(PIF_MODES)


@dataclass(frozen=True, slots=True)
class VifEvidence:
    """A VIF's offload settings as configured, and whether they are in effect yet.

    dom0 applies VIF settings when the backend is created (VM start, VIF plug),
    so after a change and before that moment the configured value is not the
    one in effect — and the one in effect is not known from XAPI.
    """

    device: str
    network: str = ""
    attached: bool = True
    offload: Mapping[str, Setting] = field(default_factory=_vif_defaults)
    pending_activation: bool = False
    uuid: str = ""
    # The guest has no PV drivers: its emulated NIC carries the traffic and no device honours the keys.
    emulated: bool = False

    def setting(self, mode: str) -> Setting:
        return self.offload.get(mode, Setting.DEFAULT)

    def effective(self, mode: str) -> bool | None:
        """Whether ``mode`` is active now; ``None`` when that cannot be known (pending change, not
        plugged, or an emulated NIC that the keys never reach)."""
        if self.pending_activation or not self.attached or self.emulated:
            return None
        return self.setting(mode).effective


@dataclass(frozen=True, slots=True)
class PifEvidence:
    """A host PIF on one of the VM's networks, with its offload settings as configured."""

    device: str
    network: str = ""
    offload: Mapping[str, Setting] = field(default_factory=_pif_defaults)
    pending_activation: bool = False
    uuid: str = ""
    physical: bool = True  # a bond-master or VLAN PIF has no device of its own under Open vSwitch

    def setting(self, mode: str) -> Setting:
        return self.offload.get(mode, Setting.DEFAULT)

    def effective(self, mode: str) -> bool | None:
        """``lro`` is off unless set on: networkd adds ``lro off`` for a PIF key not given. A bond or
        VLAN PIF's own keys say nothing about its NICs (nm.ml configures the members): unknown."""
        if self.pending_activation or not self.physical:
            return None
        return is_effective(self.setting(mode), "pif", mode)


FactValue = str | bool | float | None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What is known about the VM an alert is about: XAPI's view plus the alert's figures.

    Built by the service (see :func:`evidence_for`); every statement a
    diagnosis makes comes from here. ``pv_drivers_detected`` is ``None`` when
    it cannot be told (no guest metrics on a VM that is not running); the
    alert figures are ``None`` when the alert did not give them.
    """

    vm_name: str = ""
    vm_uuid: str = ""
    pool: str = ""
    power_state: str = ""
    os_name: str = ""
    distro: str = ""
    os_major: str = ""
    os_minor: str = ""
    pv_drivers_detected: bool | None = None
    pv_drivers_version: str = ""
    can_use_hotplug_vif: str = "unspecified"
    vifs: tuple[VifEvidence, ...] = ()
    host_name: str = ""
    pifs: tuple[PifEvidence, ...] = ()
    alert_source: str = ""
    alert_status: str = ""
    alert_interface: str | None = None
    rx: float | None = None
    tx: float | None = None
    alert_value: float | None = None
    directions: frozenset[str] = frozenset()
    unit: str | None = None
    recent_change_pending: bool = False

    # -- derived -------------------------------------------------------------------------------

    @property
    def guest_family(self) -> GuestFamily:
        return guest_family(self.os_name, self.distro, self.os_major, self.os_minor)

    @property
    def os_label(self) -> str:
        """The OS name without the Windows agent's ``|C:\\Windows|...`` tail."""
        name = self.os_name.split("|", 1)[0].strip()
        return name or (f"{self.distro} {self.os_major}".strip() if self.distro else "")

    @property
    def rx_tx_equal(self) -> bool | None:
        """Rx and Tx within 1 % of each other; ``None`` unless the alert gave both."""
        if self.rx is None or self.tx is None:
            return None
        return math.isclose(self.rx, self.tx, rel_tol=0.01, abs_tol=1e-9)

    @property
    def any_vif_pending_activation(self) -> bool:
        return any(v.pending_activation for v in self.vifs)

    @property
    def any_pif_pending_activation(self) -> bool:
        return any(p.pending_activation for p in self.pifs)

    @property
    def change_pending(self) -> bool:
        """An offload change was applied but dom0 has not put it in effect yet."""
        return self.recent_change_pending or self.any_vif_pending_activation or self.any_pif_pending_activation

    def any_vif_effective(self, mode: str) -> bool | None:
        """True if some VIF has ``mode`` in effect; False if all have it off; None if that depends on pending ones."""
        states = [v.effective(mode) for v in self.vifs]
        if any(s is True for s in states):
            return True
        if states and all(s is False for s in states):
            return False
        return None

    def any_pif_effective(self, mode: str) -> bool | None:
        states = [p.effective(mode) for p in self.pifs]
        if any(s is True for s in states):
            return True
        if states and all(s is False for s in states):
            return False
        return None

    def facts(self) -> dict[str, FactValue]:
        """Every fact rules can test and explanations can name (see ``FACTS`` for the list)."""
        facts: dict[str, FactValue] = {
            "pool": self.pool or None,
            "vm_name": self.vm_name or None,
            "vm_uuid": self.vm_uuid or None,
            "power_state": self.power_state or None,
            "os_name": self.os_name or None,
            "os_label": self.os_label or None,
            "distro": self.distro or None,
            "os_major": self.os_major or None,
            "os_minor": self.os_minor or None,
            "guest_family": self.guest_family,
            "pv_drivers_detected": self.pv_drivers_detected,
            "pv_drivers_version": self.pv_drivers_version or None,
            "pv_drivers": _pv_text(self.pv_drivers_detected, self.pv_drivers_version, self.power_state),
            "can_use_hotplug_vif": self.can_use_hotplug_vif or None,
            "host_name": self.host_name or None,
            "vif_count": float(len(self.vifs)),
            "alert_source": self.alert_source or None,
            "alert_status": self.alert_status or None,
            "interface": self.alert_interface,
            "rx": self.rx,
            "tx": self.tx,
            "alert_value": self.alert_value,
            "unit": self.unit,
            "directions": "+".join(sorted(self.directions)) or None,
            "alert_both_directions": {"rx", "tx"} <= self.directions if self.directions else None,
            "rx_tx_equal": self.rx_tx_equal,
            "rx_tx": _rx_tx_text(self.rx, self.tx, self.alert_value, self.unit),
            "recent_change_pending": self.recent_change_pending,
            "any_vif_pending_activation": self.any_vif_pending_activation,
            "any_pif_pending_activation": self.any_pif_pending_activation,
            "change_pending": self.change_pending,
            "any_vif_offload_off": any(v.setting(m) is Setting.OFF for v in self.vifs for m in VIF_MODES),
            "vifs": ", ".join(v.device for v in self.vifs) or None,
            "vifs_pending": ", ".join(v.device for v in self.vifs if v.pending_activation) or None,
            "vif_offload": _vif_offload_text(self.vifs),
            "pif_offload": _pif_offload_text(self.pifs) if self.pifs else None,
        }
        for mode in VIF_MODES:
            facts[f"any_vif_{mode}_offload_effective"] = self.any_vif_effective(mode)
            effective = [v.device for v in self.vifs if v.effective(mode)]
            facts[f"vifs_{mode}_effective"] = ", ".join(effective) or None
        for mode in PIF_MODES:
            facts[f"any_pif_{mode}_offload_effective"] = self.any_pif_effective(mode) if self.pifs else None
        return facts

    def table(self) -> list[tuple[str, str]]:
        """Compact label/value pairs for the reply: what the verdict stands on."""
        family = self.guest_family
        os_text = f"{self.os_label} ({family})" if self.os_label else f"{UNKNOWN} (no OS reported by a guest agent)"
        rows = [
            ("VM", f"{self.vm_name or UNKNOWN}" + (f" (pool {self.pool})" if self.pool else "")),
            ("Guest OS", os_text),
            ("PV drivers", _pv_text(self.pv_drivers_detected, self.pv_drivers_version, self.power_state)),
            ("Power", self.power_state or UNKNOWN),
            ("VIF offload (configured → in effect)", _vif_offload_text(self.vifs)),
        ]
        if self.pifs:
            rows.append((f"PIF offload on {self.host_name or 'host'}", _pif_offload_text(self.pifs)))
        alert = _rx_tx_text(self.rx, self.tx, self.alert_value, self.unit) or UNKNOWN
        if self.alert_interface:
            alert += f" on {self.alert_interface}"
        rows.append(("Alert Rx/Tx", alert))
        equal = self.rx_tx_equal
        rows.append(("Rx = Tx?", UNKNOWN if equal is None else ("yes" if equal else "no")))
        return rows


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _pv_text(detected: bool | None, version: str, power_state: str = "") -> str:
    if detected is None:
        if power_state == "Running":  # xapi_vm.ml: VM.start clears guest_metrics until the agent reports
            return f"{UNKNOWN} (the guest agent has not reported since the VM started)"
        return UNKNOWN
    if detected:
        return f"detected ({version})" if version else "detected"
    return "not detected"


def _rx_tx_text(rx: float | None, tx: float | None, value: float | None, unit: str | None) -> str | None:
    suffix = f" {unit}" if unit else ""
    if rx is None and tx is None:
        return f"{_number_text(value)}{suffix} (direction not given)" if value is not None else None
    parts = [
        f"Rx {_number_text(rx) if rx is not None else UNKNOWN}",
        f"Tx {_number_text(tx) if tx is not None else UNKNOWN}",
    ]
    return ", ".join(parts) + suffix


def _settings_text(offload: Mapping[str, Setting], modes: Sequence[str]) -> str:
    words = {Setting.ON: "on", Setting.OFF: "off", Setting.IGNORED: "value dom0 ignores (acts as default)"}
    changed = [f"{m} {words[setting]}" for m in modes if (setting := offload.get(m, Setting.DEFAULT)) in words]
    # A PIF's lro is off by default (networkd adds "lro off" for a key not given).
    default = "default (on; lro off)" if "lro" in modes else "default (on)"
    if not changed:
        return f"all {default}"
    rest = f", others {default}" if len(changed) < len(modes) else ""
    return ", ".join(changed) + rest


def _vif_offload_text(vifs: Sequence[VifEvidence]) -> str:
    if not vifs:
        return "no VIFs"
    items = []
    for vif in vifs:
        if vif.emulated:
            state = "no device honours it (emulated NIC: no PV drivers)"
        elif vif.pending_activation:
            state = "pending activation: not in effect yet"
        elif not vif.attached:
            state = "not plugged: applies when plugged"
        else:
            state = "in effect"
        items.append(f"{vif.device}: {_settings_text(vif.offload, VIF_MODES)} → {state}")
    return "; ".join(items)


def _pif_offload_text(pifs: Sequence[PifEvidence]) -> str:
    items = []
    for pif in pifs:
        if not pif.physical:
            state = "reaches no device (bond/VLAN under Open vSwitch)"
        else:
            state = "pending activation" if pif.pending_activation else "in effect"
        items.append(f"{pif.device}: {_settings_text(pif.offload, PIF_MODES)} → {state}")
    return "; ".join(items)


def evidence_for(
    inventory: PoolInventory,
    vm: Vm,
    alert: Alert | None = None,
    pending: Mapping[str, str] | None = None,
    recent_change_pending: bool = False,
) -> Evidence:
    """Evidence from a pool inventory, the VM an alert was resolved to, and the pending activations.

    ``pending`` maps interface uuid → activation still needed (the change
    records' view, as the inspection service passes it). Host PIFs are the
    ones on the networks the VM's VIFs use: the path its traffic takes.
    """
    pending = pending or {}
    guest = vm.guest
    vif_list = inventory.vifs_of(vm)
    vifs = tuple(
        VifEvidence(
            device=v.device,
            network=v.network_name,
            attached=v.currently_attached,
            offload=MappingProxyType(configured(v.other_config, "vif")),
            pending_activation=v.uuid in pending,
            uuid=v.uuid,
            emulated=nic_is_emulated(vm),
        )
        for v in vif_list
    )
    host = inventory.hosts.get(vm.resident_on) if vm.resident_on else None
    networks = {v.network_ref for v in vif_list}
    pifs: tuple[PifEvidence, ...] = ()
    if host is not None:
        pifs = tuple(
            PifEvidence(
                device=p.device,
                network=p.network_name,
                offload=MappingProxyType(configured(p.other_config, "pif")),
                pending_activation=p.uuid in pending,
                uuid=p.uuid,
                physical=p.physical,
            )
            for p in inventory.pifs_of(host)
            if p.network_ref in networks
        )
    if guest is not None:
        pv: bool | None = guest.pv_drivers_detected
    else:
        # No guest metrics is not "no PV drivers": every VM.start clears VM.guest_metrics until the
        # agent reports again (XA ocaml/xapi/xapi_vm.ml), and a halted VM has none. Unknown.
        pv = None
    return Evidence(
        vm_name=vm.name,
        vm_uuid=vm.uuid,
        pool=inventory.pool,
        power_state=vm.power_state,
        os_name=guest.os_name if guest else "",
        distro=guest.distro if guest else "",
        os_major=guest.major if guest else "",
        os_minor=guest.minor if guest else "",
        pv_drivers_detected=pv,
        pv_drivers_version=guest.pv_drivers_version if guest else "",
        can_use_hotplug_vif=guest.can_use_hotplug_vif if guest else "unspecified",
        vifs=vifs,
        host_name=host.name if host else vm.host_name,
        pifs=pifs,
        alert_source=alert.source if alert else "",
        alert_status=alert.status if alert else "",
        alert_interface=alert.interface if alert else None,
        rx=alert.rx if alert else None,
        tx=alert.tx if alert else None,
        alert_value=alert.value if alert else None,
        directions=frozenset(alert.directions) if alert else frozenset(),
        unit=alert.unit if alert else None,
        recent_change_pending=recent_change_pending,
    )


# The facts rules may test and explanations may name, with their kind (checked when rules load).
FactKind = Literal["str", "bool", "number"]
FACTS: Final[Mapping[str, FactKind]] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "pool", "vm_name", "vm_uuid", "power_state", "os_name", "os_label", "distro", "os_major", "os_minor",
                "guest_family", "pv_drivers_version", "pv_drivers", "can_use_hotplug_vif", "host_name",
                "alert_source", "alert_status", "interface", "unit", "directions", "rx_tx", "vifs", "vifs_pending",
                "vif_offload", "pif_offload", *(f"vifs_{m}_effective" for m in VIF_MODES),
            ),
            "str",
        ),
        **dict.fromkeys(
            (
                "pv_drivers_detected", "alert_both_directions", "rx_tx_equal", "recent_change_pending",
                "any_vif_pending_activation", "any_pif_pending_activation", "change_pending", "any_vif_offload_off",
                *(f"any_vif_{m}_offload_effective" for m in VIF_MODES),
                *(f"any_pif_{m}_offload_effective" for m in PIF_MODES),
            ),
            "bool",
        ),
        **dict.fromkeys(("vif_count", "rx", "tx", "alert_value"), "number"),
    }
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------

Operator = Literal["eq", "in", "not", "not_in", "contains", "gt", "gte", "lt", "lte"]
_OPERATORS: Final[frozenset[str]] = frozenset({"eq", "in", "not", "not_in", "contains", "gt", "gte", "lt", "lte"})
Expected = str | bool | float | tuple[str | bool | float, ...]


def _fold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``when`` entry: ``fact`` compared with ``expected`` by ``op``. Unknown facts never satisfy it."""

    fact: str
    op: Operator
    expected: Expected

    def holds(self, facts: Mapping[str, FactValue]) -> bool:
        actual = facts.get(self.fact)
        if actual is None:
            return False
        expected = self.expected
        if self.op == "eq":
            return _fold(actual) == _fold(expected)
        if self.op in ("in", "not_in"):
            members = expected if isinstance(expected, tuple) else (expected,)
            inside = _fold(actual) in {_fold(m) for m in members}
            return inside if self.op == "in" else not inside
        if self.op == "not":
            return _fold(actual) != _fold(expected)
        if self.op == "contains":
            return isinstance(actual, str) and str(expected).casefold() in actual.casefold()
        if isinstance(actual, bool) or not isinstance(actual, int | float) or not isinstance(expected, int | float):
            return False
        return {
            "gt": actual > expected,
            "gte": actual >= expected,
            "lt": actual < expected,
            "lte": actual <= expected,
        }[self.op]

    def describe(self) -> str:
        return f"{self.fact} {_SYMBOLS[self.op]} {_show(self.expected)}"


_SYMBOLS: Final[Mapping[str, str]] = MappingProxyType(
    {"eq": "=", "in": "in", "not": "≠", "not_in": "not in", "contains": "contains", "gt": ">", "gte": "≥", "lt": "<",
     "lte": "≤"}
)  # fmt: skip


def _show(value: object) -> str:
    """A fact or expected value as a rule file would write it."""
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number_text(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True, slots=True)
class Reason:
    """A condition that held, with the value it held on: the "why" of a verdict."""

    condition: Condition
    actual: FactValue

    @property
    def text(self) -> str:
        return f"{self.condition.describe()} (is {_show(self.actual)})"


@dataclass(frozen=True, slots=True)
class Action:
    """A recommended action the bot maps to a button; ``params`` carry e.g. ``modes = ("tx",)``."""

    code: str
    label: str
    params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def modes(self) -> tuple[str, ...]:
        modes = self.params.get("modes", ())
        return tuple(str(m) for m in modes) if isinstance(modes, tuple | list) else ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One piece of knowledge: when these facts hold, this is the verdict and what to do."""

    id: str
    title: str
    priority: int
    verdict: str
    verdict_label: str
    confidence: Confidence
    explanation: str
    when: tuple[Condition, ...] = ()
    boost_when: tuple[Condition, ...] = ()
    boost_to: Confidence | None = None
    actions: tuple[Action, ...] = ()
    advice: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    enabled: bool = True
    origin: str = ""  # the file that defined (or last overrode) it

    def match(self, facts: Mapping[str, FactValue]) -> tuple[Reason, ...] | None:
        """The reasons it applies, or ``None`` when a condition fails."""
        if not all(c.holds(facts) for c in self.when):
            return None
        return tuple(Reason(c, facts.get(c.fact)) for c in self.when)

    def boosted(self, facts: Mapping[str, FactValue]) -> tuple[Reason, ...]:
        if not self.boost_when or not all(c.holds(facts) for c in self.boost_when):
            return ()
        return tuple(Reason(c, facts.get(c.fact)) for c in self.boost_when)


class RuleError(ValueError):
    """A rule file the bot refuses to load, naming the file, the rule and the field at fault."""

    def __init__(self, path: str, rule_id: str | None, field_name: str | None, problem: str) -> None:
        self.path, self.rule_id, self.field, self.problem = path, rule_id, field_name, problem
        where = [f"rules file {path}"]
        if rule_id is not None:
            where.append(f"rule '{rule_id}'")
        if field_name is not None:
            where.append(f"field '{field_name}'")
        super().__init__(f"{', '.join(where)}: {problem}")


_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
_RULE_KEYS: Final = frozenset(
    {
        "id", "title", "priority", "verdict", "verdict_label", "confidence", "explanation", "when", "boost_when",
        "boost_to", "actions", "advice", "references", "enabled",
    }
)  # fmt: skip
_REQUIRED: Final = ("id", "title", "priority", "verdict", "verdict_label", "confidence", "explanation", "when")
_FORMATTER = string.Formatter()


def _placeholders(text: str) -> list[str]:
    try:
        return [name for _, name, _, _ in _FORMATTER.parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"bad placeholder syntax ({exc}); write literal braces as {{{{ and }}}}") from exc


class _Checker:
    """Validation with the file and rule in hand, so every error says exactly where it is."""

    def __init__(self, path: str, rule_id: str | None) -> None:
        self.path, self.rule_id = path, rule_id

    def fail(self, field_name: str | None, problem: str) -> RuleError:
        return RuleError(self.path, self.rule_id, field_name, problem)

    def text(self, raw: Mapping[str, Any], key: str, *, required: bool = True) -> str:
        value = raw.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string (got {value!r})")
        self.template(key, value)
        return value.strip()

    def template(self, key: str, value: str) -> None:
        try:
            names = _placeholders(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
        for name in names:
            if name not in FACTS:
                raise self.fail(key, f"unknown placeholder {{{name}}}; known: {', '.join(sorted(FACTS))}")

    def confidence(self, raw: Mapping[str, Any], key: str) -> Confidence:
        value = raw.get(key)
        for level in CONFIDENCES:
            if value == level:
                return level
        raise self.fail(key, f"must be one of {', '.join(CONFIDENCES)} (got {value!r})")

    def conditions(self, raw: Mapping[str, Any], key: str) -> tuple[Condition, ...]:
        table = raw.get(key, {})
        if not isinstance(table, Mapping):
            raise self.fail(key, "must be a table of fact = value")
        return tuple(self.condition(f"{key}.{fact}", fact, spec) for fact, spec in table.items())

    def condition(self, where: str, fact: str, spec: object) -> Condition:
        kind = FACTS.get(fact)
        if kind is None:
            raise self.fail(where, f"unknown fact '{fact}'; known: {', '.join(sorted(FACTS))}")
        if isinstance(spec, Mapping):
            if len(spec) != 1:
                raise self.fail(where, f"an operator table holds exactly one of {', '.join(sorted(_OPERATORS))}")
            op, value = next(iter(spec.items()))
            if op not in _OPERATORS:
                raise self.fail(where, f"unknown operator '{op}'; use one of {', '.join(sorted(_OPERATORS))}")
        elif isinstance(spec, list):
            op, value = "in", spec
        else:
            op, value = "eq", spec
        if op in ("in", "not_in"):
            items = value if isinstance(value, list) else [value]
            if not items:
                raise self.fail(where, "an 'in' list must not be empty")
            return Condition(fact, op, tuple(self.value(where, kind, v) for v in items))
        if op in ("gt", "gte", "lt", "lte") and kind != "number":
            raise self.fail(where, f"'{op}' compares numbers, but {fact} is a {kind}")
        if op == "contains" and kind != "str":
            raise self.fail(where, f"'contains' looks into text, but {fact} is a {kind}")
        return Condition(fact, op, self.value(where, kind, value))

    def value(self, where: str, kind: FactKind, value: object) -> str | bool | float:
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind == "str" and isinstance(value, str):
            return value
        article = "an" if kind == "number" else "a"
        word = {"str": "string", "bool": "boolean (true/false)", "number": "number"}[kind]
        raise self.fail(where, f"must be {article} {word} (got {value!r})")

    def actions(self, raw: Mapping[str, Any]) -> tuple[Action, ...]:
        items = raw.get("actions", [])
        if not isinstance(items, list):
            raise self.fail("actions", "must be an array of tables ([[rule.actions]])")
        actions = []
        for index, item in enumerate(items):
            where = f"actions[{index}]"
            if not isinstance(item, Mapping):
                raise self.fail(where, "must be a table with a 'code'")
            code = item.get("code")
            if code not in ACTION_CODES:
                raise self.fail(f"{where}.code", f"must be one of {', '.join(sorted(ACTION_CODES))} (got {code!r})")
            unknown = set(item) - {"code", "label", "modes"}
            if unknown:
                raise self.fail(f"{where}.{sorted(unknown)[0]}", "unknown key; an action has code, label and modes")
            label = item.get("label", DEFAULT_ACTION_LABELS[code])
            if not isinstance(label, str) or not label.strip():
                raise self.fail(f"{where}.label", f"must be a non-empty string (got {label!r})")
            self.template(f"{where}.label", label)
            params: dict[str, object] = {}
            if code == "disable_offload" or "modes" in item:
                modes = item.get("modes")
                if not isinstance(modes, list) or not modes or not all(isinstance(m, str) for m in modes):
                    raise self.fail(f"{where}.modes", f"must be a non-empty list of VIF modes: {', '.join(VIF_MODES)}")
                bad = [m for m in modes if m not in VIF_MODES]
                if bad:
                    raise self.fail(
                        f"{where}.modes", f"{', '.join(bad)} cannot be set on a VIF; use {', '.join(VIF_MODES)}"
                    )
                params["modes"] = tuple(modes)
            actions.append(Action(code, label.strip(), MappingProxyType(params)))
        return tuple(actions)

    def strings(self, raw: Mapping[str, Any], key: str, *, templates: bool) -> tuple[str, ...]:
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        if templates:
            for text in value:
                self.template(key, text)
        return tuple(v.strip() for v in value)


def _rule_from(raw: Mapping[str, Any], path: str) -> Rule:
    rule_id = raw.get("id")
    check = _Checker(path, rule_id if isinstance(rule_id, str) else None)
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise check.fail("id", f"must be lower-case letters, digits, '-', '_' or '.' (got {rule_id!r})")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise check.fail(unknown[0], f"unknown field; a rule has {', '.join(sorted(_RULE_KEYS))}")
    for key in _REQUIRED:
        if key not in raw:
            raise check.fail(key, "is required")
    priority = raw["priority"]
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise check.fail("priority", f"must be an integer, higher wins (got {priority!r})")
    verdict = raw["verdict"]
    if not isinstance(verdict, str) or not _ID.match(verdict):
        raise check.fail("verdict", f"must be a short code like 'benign-driver-artifact' (got {verdict!r})")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise check.fail("enabled", f"must be true or false (got {enabled!r})")
    confidence = check.confidence(raw, "confidence")
    boost_to: Confidence | None = None
    boost_when = check.conditions(raw, "boost_when")
    if "boost_to" in raw:
        boost_to = check.confidence(raw, "boost_to")
        if CONFIDENCES.index(boost_to) <= CONFIDENCES.index(confidence):
            raise check.fail("boost_to", f"must be above the rule's confidence '{confidence}'")
    return Rule(
        id=rule_id,
        title=check.text(raw, "title"),
        priority=priority,
        verdict=verdict,
        verdict_label=check.text(raw, "verdict_label"),
        confidence=confidence,
        explanation=check.text(raw, "explanation"),
        when=check.conditions(raw, "when"),
        boost_when=boost_when,
        boost_to=boost_to,
        actions=check.actions(raw),
        advice=check.strings(raw, "advice", templates=True),
        references=check.strings(raw, "references", templates=False),
        enabled=enabled,
        origin=path,
    )


def _raw_rules(text: str, path: str) -> list[Mapping[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(path, None, None, f"not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"format", "rule"})
    if unknown:
        raise RuleError(
            path, None, unknown[0], "unknown top-level key; a rules file holds 'format' and [[rule]] tables"
        )
    if data.get("format", 1) != 1:
        raise RuleError(path, None, "format", f"this xenbot reads format 1 (got {data.get('format')!r})")
    rules = data.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        raise RuleError(path, None, "rule", "rules are [[rule]] tables")
    seen: set[str] = set()
    for raw in rules:
        rule_id = raw.get("id")
        if not isinstance(rule_id, str):
            raise RuleError(path, None, "id", f"every rule needs a string id (got {rule_id!r})")
        if rule_id in seen:
            raise RuleError(path, rule_id, "id", "defined twice in this file")
        seen.add(rule_id)
    return rules


BUILTIN_RULES_FILE: Final = "rules/builtin.toml"


@functools.cache
def _builtin_raw() -> tuple[tuple[Mapping[str, Any], ...], str]:
    resource = resources.files("bot.domain").joinpath(BUILTIN_RULES_FILE)
    path = f"bot/domain/{BUILTIN_RULES_FILE}"
    return tuple(_raw_rules(resource.read_text(encoding="utf-8"), path)), path


def load_rules(extra_paths: Iterable[str | Path] = ()) -> list[Rule]:
    """The built-in rules, then each operator file in order, sorted by priority (highest first).

    An operator rule whose ``id`` exists replaces the keys it gives and keeps
    the rest (``when`` is replaced whole), so ``priority = 10`` or
    ``enabled = false`` alone is a valid override; a new ``id`` adds a rule.
    Any problem raises :class:`RuleError` naming the file, rule and field.
    """
    builtin, builtin_path = _builtin_raw()
    layers: dict[str, tuple[dict[str, Any], str]] = {}
    for raw in builtin:
        layers[raw["id"]] = (dict(raw), builtin_path)
    rules: dict[str, Rule] = {rule_id: _rule_from(raw, origin) for rule_id, (raw, origin) in layers.items()}
    for extra in extra_paths:
        path = str(extra)
        try:
            text = Path(extra).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(path, None, None, f"cannot read: {exc}") from None
        for raw in _raw_rules(text, path):
            rule_id = raw["id"]
            base = layers[rule_id][0] if rule_id in layers else {}
            merged = {**base, **raw}
            layers[rule_id] = (merged, path)
            rules[rule_id] = _rule_from(merged, path)
    order = {rule_id: index for index, rule_id in enumerate(rules)}
    return sorted(rules.values(), key=lambda r: (-r.priority, order[r.id]))


# --------------------------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------------------------


class _Fill(string.Formatter):
    """``str.format`` that reads only plain fact names and writes "unknown" for anything missing."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        # Plain names only: no attribute or index access, whatever a rule file says.
        return kwargs.get(field_name), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return UNKNOWN
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float) and not format_spec:
            return _number_text(value)
        try:
            return format(value, format_spec)
        except (ValueError, TypeError):
            return str(value)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        return value


_FILL = _Fill()


def fill(template: str, facts: Mapping[str, FactValue]) -> str:
    """A rule's text with its placeholders filled from the facts; never raises, never invents."""
    try:
        return _FILL.vformat(template, (), dict(facts))
    except (ValueError, IndexError, KeyError):
        return template


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The verdict on one alert, with everything needed to show it and to say why."""

    verdict: str
    verdict_label: str
    confidence: Confidence
    explanation: str
    actions: tuple[Action, ...]
    rule_id: str
    rule_title: str
    matched: tuple[Reason, ...]
    evidence: Evidence
    boosted_by: tuple[Reason, ...] = ()
    advice: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    also_matched: tuple[str, ...] = ()

    def evidence_table(self) -> list[tuple[str, str]]:
        return self.evidence.table()

    def why(self) -> list[str]:
        """The conditions that held, then what raised the confidence, in words."""
        lines = [r.text for r in self.matched] or ["no specific rule matched"]
        lines += [f"confidence raised by {r.text}" for r in self.boosted_by]
        if self.also_matched:
            lines.append(f"also matched (lower priority): {', '.join(self.also_matched)}")
        return lines


# Used only when no loaded rule matches at all (e.g. an operator disabled the built-in "unknown").
FALLBACK_RULE: Final = Rule(
    id="fallback-unknown",
    title="No rule matched",
    priority=-(10**9),
    verdict="unknown",
    verdict_label="Cause unknown",
    confidence="low",
    explanation=(
        "None of the loaded rules matches what is known about {vm_name} ({os_label}, PV drivers {pv_drivers}, "
        "alert {rx_tx}), so xenbot does not name a cause."
    ),
    actions=(Action("show_vifs", DEFAULT_ACTION_LABELS["show_vifs"]),),
    advice=("Compare the guest's own counters with the host's and the switch port's to see where packets are lost.",),
    origin="bot/domain/diagnosis.py",
)


def diagnose(evidence: Evidence, rules: Sequence[Rule] | None = None) -> Diagnosis:
    """The verdict of the highest-priority enabled rule whose conditions all hold on the evidence."""
    ruleset = load_rules() if rules is None else rules
    facts = evidence.facts()
    matches: list[tuple[Rule, tuple[Reason, ...]]] = []
    for _, rule in sorted(enumerate(ruleset), key=lambda item: (-item[1].priority, item[0])):
        if not rule.enabled:
            continue
        reasons = rule.match(facts)
        if reasons is not None:
            matches.append((rule, reasons))
    rule, reasons = matches[0] if matches else (FALLBACK_RULE, ())
    boosts = rule.boosted(facts)
    confidence = rule.confidence
    if boosts:
        target = rule.boost_to or CONFIDENCES[min(CONFIDENCES.index(confidence) + 1, len(CONFIDENCES) - 1)]
        confidence = target
    actions = tuple(Action(a.code, fill(a.label, facts), a.params) for a in rule.actions)
    return Diagnosis(
        verdict=rule.verdict,
        verdict_label=fill(rule.verdict_label, facts),
        confidence=confidence,
        explanation=fill(rule.explanation, facts),
        actions=actions,
        rule_id=rule.id,
        rule_title=rule.title,
        matched=reasons,
        evidence=evidence,
        boosted_by=boosts,
        advice=tuple(fill(a, facts) for a in rule.advice),
        references=rule.references,
        also_matched=tuple(r.id for r, _ in matches[1:] if r.when),  # not the catch-all
    )
