"""The slice of the XAPI data model the simulator serves, and its wire encoding.

One table drives everything: the store fills defaults from it, the dispatcher
generates ``get_<field>`` / ``set_<field>`` / ``add_to_<field>`` ... from it, and
records are serialised through it. Describing a field once means a getter can
never disagree with ``get_record`` about how an ``int`` is encoded.

Wire rules (XA ``doc/content/xen-api/wire-protocol.md``): ``int`` travels as a
decimal string, ``float`` as ``<double>``, ``datetime`` as ``<dateTime.iso8601>``
in XAPI's ``YYYYMMDDTHH:MM:SSZ`` form, enums and refs as strings, sets as arrays,
maps as structs. Only read-write (``RW``) fields get setters; a read-only map such
as ``PIF.properties`` has no ``add_to_properties`` on a real pool, so a client
that tries gets ``MESSAGE_METHOD_UNKNOWN`` here too.
"""

from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bot.xen.sim import errors
from bot.xen.sim.errors import XapiError

NULL_REF = "OpaqueRef:NULL"


class Kind(Enum):
    """How a field is stored and encoded."""

    STR = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"
    REF = "ref"
    ENUM = "enum"
    MAP = "map"  # (string -> string) map
    SET = "set"  # string set (or ref set when ``target`` is given)


@dataclass(frozen=True)
class Field:
    """One field of a XAPI class."""

    name: str
    kind: Kind
    rw: bool = False
    target: str | None = None  # class of a REF / ref SET
    values: tuple[str, ...] = ()  # allowed values of an ENUM (or of SET members)

    def default(self) -> Any:
        """The value a freshly created object has when the creator gives none."""
        if self.kind is Kind.STR:
            return ""
        if self.kind is Kind.INT:
            return 0
        if self.kind is Kind.FLOAT:
            return 0.0
        if self.kind is Kind.BOOL:
            return False
        if self.kind is Kind.DATETIME:
            return EPOCH
        if self.kind is Kind.REF:
            return NULL_REF
        if self.kind is Kind.ENUM:
            return self.values[0]
        if self.kind is Kind.MAP:
            return {}
        return []


@dataclass(frozen=True)
class ClassSpec:
    """A XAPI class: its name as XAPI spells it and its fields."""

    name: str
    fields: dict[str, Field]
    by_name_label: bool = False

    @property
    def event_name(self) -> str:
        """Events and ``valid_ref_counts`` use the lower-cased class name."""
        return self.name.lower()


EPOCH = "19700101T00:00:00Z"


def _f(name: str, kind: Kind, rw: bool = False, target: str | None = None, values: tuple[str, ...] = ()) -> Field:
    return Field(name, kind, rw, target, values)


S, INT, FL, B, DT, R, E, M, ST = (
    Kind.STR,
    Kind.INT,
    Kind.FLOAT,
    Kind.BOOL,
    Kind.DATETIME,
    Kind.REF,
    Kind.ENUM,
    Kind.MAP,
    Kind.SET,
)

POWER_STATES = ("Halted", "Paused", "Running", "Suspended")
HOTPLUG = ("unspecified", "yes", "no")


def _spec(name: str, fields: list[Field], *, by_name_label: bool = False) -> ClassSpec:
    uuid = _f("uuid", S)
    return ClassSpec(name, {f.name: f for f in [uuid, *fields]}, by_name_label)


SCHEMA: dict[str, ClassSpec] = {
    spec.name: spec
    for spec in [
        _spec(
            "pool",
            [
                _f("name_label", S, rw=True),
                _f("name_description", S, rw=True),
                _f("master", R, target="host"),
                _f("default_SR", R, target="SR"),
                _f("ha_enabled", B),
                _f("other_config", M, rw=True),
                _f("tags", ST, rw=True),
            ],
        ),
        _spec(
            "host",
            [
                _f("name_label", S, rw=True),
                _f("name_description", S, rw=True),
                _f("hostname", S),
                _f("address", S),
                _f("enabled", B),
                _f("API_version_major", INT),
                _f("API_version_minor", INT),
                _f("API_version_vendor", S),
                _f("software_version", M),
                _f("PIFs", ST, target="PIF"),
                _f("resident_VMs", ST, target="VM"),
                _f("control_domain", R, target="VM"),
                _f("other_config", M, rw=True),
                _f("tags", ST, rw=True),
            ],
            by_name_label=True,
        ),
        _spec(
            "network",
            [
                _f("name_label", S, rw=True),
                _f("name_description", S, rw=True),
                _f("bridge", S),
                _f("MTU", INT, rw=True),
                _f("managed", B),
                _f("VIFs", ST, target="VIF"),
                _f("PIFs", ST, target="PIF"),
                _f("other_config", M, rw=True),
                _f("tags", ST, rw=True),
            ],
            by_name_label=True,
        ),
        _spec(
            "PIF",
            [
                _f("device", S),
                _f("host", R, target="host"),
                _f("network", R, target="network"),
                _f("MAC", S),
                _f("MTU", INT),
                _f("VLAN", INT),
                _f("physical", B),
                _f("currently_attached", B),
                _f("management", B),
                _f("managed", B),
                _f("ip_configuration_mode", E, values=("None", "DHCP", "Static")),
                _f("IP", S),
                _f("netmask", S),
                _f("gateway", S),
                _f("DNS", S),
                _f("primary_address_type", E, values=("IPv4", "IPv6")),
                _f("bond_slave_of", R, target="Bond"),
                _f("bond_master_of", ST, target="Bond"),
                _f("VLAN_master_of", R, target="VLAN"),
                _f("VLAN_slave_of", ST, target="VLAN"),
                _f("other_config", M, rw=True),
                _f("properties", M),
                _f("capabilities", ST),
                _f("disallow_unplug", B, rw=True),
            ],
        ),
        _spec(
            "Bond",
            [
                _f("master", R, target="PIF"),
                _f("slaves", ST, target="PIF"),
                _f("primary_slave", R, target="PIF"),
                _f("mode", E, values=("balance-slb", "active-backup", "lacp")),
                _f("properties", M),
                _f("links_up", INT),
                _f("other_config", M, rw=True),
            ],
        ),
        _spec(
            "VLAN",
            [
                _f("tagged_PIF", R, target="PIF"),
                _f("untagged_PIF", R, target="PIF"),
                _f("tag", INT),
                _f("other_config", M, rw=True),
            ],
        ),
        _spec(
            "VM",
            [
                _f("name_label", S, rw=True),
                _f("name_description", S, rw=True),
                _f("power_state", E, values=POWER_STATES),
                _f("allowed_operations", ST),
                _f("current_operations", M),
                _f("VIFs", ST, target="VIF"),
                _f("guest_metrics", R, target="VM_guest_metrics"),
                _f("resident_on", R, target="host"),
                _f("affinity", R, rw=True, target="host"),
                _f("domid", INT),
                _f("domain_type", E, values=("hvm", "pv", "pv_in_pvh", "pvh", "unspecified")),
                _f("is_a_template", B, rw=True),
                _f("is_default_template", B),
                _f("is_a_snapshot", B),
                _f("snapshot_of", R, target="VM"),
                _f("snapshots", ST, target="VM"),
                _f("snapshot_time", DT),
                _f("is_control_domain", B),
                _f("user_version", INT, rw=True),
                _f("memory_static_max", INT),
                _f("VCPUs_max", INT),
                _f("other_config", M, rw=True),
                _f("platform", M, rw=True),
                _f("blocked_operations", M, rw=True),
                _f("xenstore_data", M, rw=True),
                _f("tags", ST, rw=True),
            ],
            by_name_label=True,
        ),
        _spec(
            "VM_guest_metrics",
            [
                _f("os_version", M),
                _f("PV_drivers_version", M),
                _f("PV_drivers_up_to_date", B),
                _f("PV_drivers_detected", B),
                _f("networks", M),
                _f("disks", M),
                _f("other", M),
                _f("last_updated", DT),
                _f("live", B),
                _f("can_use_hotplug_vbd", E, values=HOTPLUG),
                _f("can_use_hotplug_vif", E, values=HOTPLUG),
                _f("other_config", M, rw=True),
            ],
        ),
        _spec(
            "VIF",
            [
                _f("device", S),
                _f("network", R, target="network"),
                _f("VM", R, target="VM"),
                _f("MAC", S),
                _f("MAC_autogenerated", B),
                _f("MTU", INT),
                _f("currently_attached", B),
                _f("status_code", INT),
                _f("status_detail", S),
                _f("runtime_properties", M),
                _f("allowed_operations", ST, values=("attach", "plug", "unplug")),
                _f("current_operations", M),
                _f("other_config", M, rw=True),
                _f("qos_algorithm_type", S, rw=True),
                _f("qos_algorithm_params", M, rw=True),
                _f("qos_supported_algorithms", ST),
                _f("locking_mode", E, rw=True, values=("network_default", "locked", "unlocked", "disabled")),
                _f("ipv4_allowed", ST, rw=True),
                _f("ipv6_allowed", ST, rw=True),
            ],
        ),
        _spec(
            "task",
            [
                _f("name_label", S),
                _f("name_description", S),
                _f("allowed_operations", ST),
                _f("current_operations", M),
                _f("created", DT),
                _f("finished", DT),
                _f("status", E, values=("pending", "success", "failure", "cancelling", "cancelled")),
                _f("resident_on", R, target="host"),
                _f("progress", FL),
                _f("type", S),
                _f("result", S),
                _f("error_info", ST),
                _f("other_config", M, rw=True),
                _f("subtask_of", R, target="task"),
                _f("subtasks", ST, target="task"),
                _f("backtrace", S),
            ],
            by_name_label=True,
        ),
    ]
}

# One-to-many relations XAPI keeps in both directions: setting the child's ref
# field updates the parent's ref set (and so emits a ``mod`` event on the parent,
# as XAPI's database does).
RELATIONS: list[tuple[str, str, str, str]] = [
    # (child class, child ref field, parent class, parent set field)
    ("VIF", "VM", "VM", "VIFs"),
    ("VIF", "network", "network", "VIFs"),
    ("PIF", "network", "network", "PIFs"),
    ("PIF", "host", "host", "PIFs"),
    ("PIF", "bond_slave_of", "Bond", "slaves"),
    ("Bond", "master", "PIF", "bond_master_of"),
    ("VLAN", "tagged_PIF", "PIF", "VLAN_slave_of"),
    ("VM", "resident_on", "host", "resident_VMs"),
    ("VM", "snapshot_of", "VM", "snapshots"),
]

# The untagged (VLAN) PIF points back at its VLAN object through a single ref.
ONE_TO_ONE: list[tuple[str, str, str, str]] = [
    ("VLAN", "untagged_PIF", "PIF", "VLAN_master_of"),
]


def datetime_wire(value: str) -> xmlrpc.client.DateTime:
    """XAPI sends datetimes as ``<dateTime.iso8601>20240102T03:04:05Z</...>``."""
    return xmlrpc.client.DateTime(value)


def to_wire(fld: Field, value: Any) -> Any:
    """Encode a stored value the way XAPI puts it on the wire."""
    kind = fld.kind
    if kind is Kind.INT:
        return str(int(value))
    if kind is Kind.FLOAT:
        return float(value)
    if kind is Kind.DATETIME:
        return datetime_wire(value)
    if kind is Kind.MAP:
        return dict(value)
    if kind is Kind.SET:
        return list(value)
    return value


def from_wire(fld: Field, value: Any, param: str = "value") -> Any:
    """Decode a client-supplied value for ``fld``; reject what XAPI would reject."""
    kind = fld.kind
    if kind in (Kind.STR, Kind.REF):
        if isinstance(value, str):
            return value
    elif kind is Kind.ENUM:
        if isinstance(value, str):
            if value not in fld.values:
                raise XapiError(errors.INVALID_VALUE, [fld.name, value])
            return value
    elif kind is Kind.INT:
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is Kind.FLOAT:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is Kind.BOOL:
        if isinstance(value, bool):
            return value
    elif kind is Kind.MAP:
        if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return dict(value)
    elif kind is Kind.SET:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif kind is Kind.DATETIME and isinstance(value, (str, xmlrpc.client.DateTime)):
        return str(value)
    raise XapiError(errors.FIELD_TYPE_ERROR, [param])
