"""XAPI semantics on top of the store: power states, plugging, and *effective* offload state.

The point of the simulator is the gap between what ``other_config`` says and what
dom0 actually applied. XAPI stores ``ethtool-*`` keys and nothing more; they only
reach a device when dom0 (re)creates or (re)configures it:

* **VIF** — the ``vif-real`` hotplug script runs ``ethtool -K vifD.N`` when the
  backend device comes online: VM start, ``VIF.plug`` on a running VM, reboot.
  Only ``rx tx sg tso ufo gso`` are read; ``true|on`` → on, ``false|off`` → off
  (case-sensitive), anything else is logged and ignored, so the device keeps its
  default (on). Each plug creates a fresh device, so a removed key reverts to on.
  (XA ``ocaml/xenopsd/scripts/vif-real`` ``handle_ethtool``)
* **PIF** — networkd applies ``ethtool-{rx,tx,sg,tso,ufo,gso,gro,lro}`` (falling back
  to ``PIF.properties`` such as ``gro``) when XAPI brings the PIF up: ``PIF.plug``
  (also on an already-plugged PIF — that is how a change is applied),
  ``PIF.reconfigure_ip``, ``PIF.set_property``, and host start. A key that is
  *absent* is simply not applied, so a physical NIC keeps whatever it was last set
  to until the host restarts — except ``lro``: networkd adds ``lro off`` to every
  interface it configures unless ``ethtool-lro`` is given, so a PIF's lro default is
  *off*. (XA ``ocaml/xapi/nm.ml`` ``determine_ethtool_settings``, ``create_bond``;
  ``ocaml/xapi/xapi_pif.ml`` ``set_property``/``plug``;
  ``ocaml/networkd/bin/network_server.ml`` ``set_ethtool_offload``;
  ``ocaml/xapi-idl/network/network_interface.ml`` ``default_interface``)
* **Bonds** (Open vSwitch backend, the XCP-ng/XenServer default): plugging the bond
  master configures each *slave* NIC from the slave's own ``other_config`` (with
  the master's ``properties`` as fallback). Under OVS the bond itself is not a
  kernel device, so ``ethtool-*`` keys on the bond-master PIF reach nothing; with
  ``network_backend="bridge"`` they apply to the bond device. VLAN PIFs behave the
  same way and re-apply the settings of the PIF they are tagged on.

The effective state is kept beside the XAPI rows, never in them, and is read with
:meth:`Pool.effective_offload` (or ``sim.get_effective_offload`` over XML-RPC).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bot.xen.sim import errors
from bot.xen.sim.agent import GuestAgent
from bot.xen.sim.errors import XapiError
from bot.xen.sim.schema import NULL_REF
from bot.xen.sim.store import Obj, Store

VIF_OFFLOAD_KEYS = ("rx", "tx", "sg", "tso", "ufo", "gso")
PIF_OFFLOAD_KEYS = ("rx", "tx", "sg", "tso", "ufo", "gso", "gro", "lro")
DRIVER_DEFAULT = "on"
# networkd's default_interface.ethtool_offload (XA ocaml/xapi-idl/network/network_interface.ml).
NETWORKD_OFFLOAD_DEFAULTS = {"lro": "off"}
PIF_PROPERTY_VALUES = {"gro": ("on", "off")}

# VM operation -> power states it is allowed from, in XAPI's order
# (XA ocaml/xapi/xapi_vm_lifecycle.ml allowed_power_states).
VM_OP_POWER_STATES: dict[str, tuple[str, ...]] = {
    "start": ("Halted",),
    "clean_shutdown": ("Running",),
    "clean_reboot": ("Running",),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "hard_reboot": ("Paused", "Running"),
}
_SNAPSHOT_OPS = ("hard_shutdown",)
_CONTROL_DOMAIN_OPS = ("start",)


def ethtool_settings(
    other_config: Mapping[str, str], keys: Iterable[str], properties: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The offload settings dom0 would apply for ``other_config`` (valid keys only)."""
    settings: dict[str, str] = {}
    for key in keys:
        value = other_config.get("ethtool-" + key)
        if value is not None:
            if value in ("true", "on"):
                settings[key] = "on"
            elif value in ("false", "off"):
                settings[key] = "off"
            # Anything else: XAPI/vif-real log "Unknown ethtool argument" and skip it.
        elif properties is not None and key in properties:
            settings[key] = properties[key]
    return settings


def utc_now() -> str:
    """Current time in XAPI's datetime form."""
    return time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime())


class Pool(Store):
    """The pool database plus the operations whose semantics the bot depends on.

    Every method that changes state emits events through the store. Methods named
    like XAPI messages (``vif_plug``, ``vm_start`` ...) perform XAPI's checks and
    raise :class:`XapiError` exactly as a real pool would; ``create_*`` helpers
    arrange state for fixtures and tests and skip those checks.
    """

    def __init__(self, *, seed: int = 0, network_backend: str = "openvswitch") -> None:
        super().__init__(seed=seed)
        if network_backend not in ("openvswitch", "bridge"):
            raise ValueError("network_backend must be 'openvswitch' or 'bridge'")
        self.network_backend = network_backend
        self._vif_effective: dict[str, dict[str, str]] = {}
        self._nic_state: dict[str, dict[str, str]] = {}
        self._domids = itertools.count(1)
        self.agent = GuestAgent(self)  # guest metrics vanish at VM.start (bot/xen/sim/agent.py)

    # ================================================================ lookups
    @property
    def pool_ref(self) -> str:
        """The single ``pool`` object."""
        return self.all("pool")[0].ref

    @property
    def master_ref(self) -> str:
        """The host that currently holds the master role."""
        return str(self.all("pool")[0].fields["master"])

    def lookup(self, cls: str, key: str) -> str:
        """Resolve a ref, uuid or ``name_label`` of ``cls`` to a ref (``KeyError`` if none)."""
        with self.lock:
            obj = self.find(key)
            if obj is not None and obj.cls == cls:
                return obj.ref
            for o in self.all(cls):
                if key in (o.fields["uuid"], o.fields.get("name_label")):
                    return o.ref
        raise KeyError(f"no {cls} {key!r}")

    def vm(self, name: str) -> str:
        """Ref of the VM with this name_label, uuid or ref."""
        return self.lookup("VM", name)

    def host(self, name: str) -> str:
        """Ref of the host with this name_label, uuid or ref."""
        return self.lookup("host", name)

    def network(self, name: str) -> str:
        """Ref of the network with this name_label, uuid or ref."""
        return self.lookup("network", name)

    def pif(self, host: str, device: str, vlan: int = -1) -> str:
        """Ref of the PIF ``device`` (and ``vlan``) on ``host`` (name or ref)."""
        host_ref = self.host(host)
        with self.lock:
            for o in self.all("PIF"):
                f = o.fields
                if f["host"] == host_ref and f["device"] == device and f["VLAN"] == vlan:
                    return o.ref
        raise KeyError(f"no PIF {device} (VLAN {vlan}) on {host}")

    def vif(self, vm: str, device: str | int = 0) -> str:
        """Ref of the VIF with ``device`` on ``vm`` (name or ref)."""
        vm_ref = self.vm(vm)
        with self.lock:
            for ref in self.get(vm_ref, "VM").fields["VIFs"]:
                if self.get(ref, "VIF").fields["device"] == str(device):
                    return str(ref)
        raise KeyError(f"no VIF {device} on {vm}")

    def fields(self, ref: str) -> dict[str, Any]:
        """A copy of the stored (Python-typed) fields of ``ref``."""
        with self.lock:
            obj = self.find(ref)
            if obj is None:
                raise KeyError(ref)
            return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                    for k, v in obj.fields.items()}

    def set_field(self, ref: str, field: str, value: Any) -> None:
        """Write one field directly (emits a ``mod`` event; no XAPI checks, no side effects)."""
        self.update(ref, {field: value})

    # =============================================================== creation
    def create_pool(self, name_label: str, *, other_config: Mapping[str, str] | None = None) -> str:
        """The pool object (its ``master`` is set by the first :meth:`create_host`)."""
        return self.create("pool", {"name_label": name_label, "other_config": other_config or {}})

    def create_host(
        self,
        name_label: str,
        *,
        hostname: str | None = None,
        address: str = "",
        product_version: str = "8.2.1",
        other_config: Mapping[str, str] | None = None,
    ) -> str:
        """A host plus its control domain; the first host becomes the pool master."""
        with self.lock:
            host = self.create(
                "host",
                {
                    "name_label": name_label,
                    "hostname": hostname or name_label,
                    "address": address,
                    "enabled": True,
                    "API_version_major": 2,
                    "API_version_minor": 21,
                    "API_version_vendor": "XenSource",
                    "software_version": {
                        "product_brand": "XCP-ng",
                        "product_version": product_version,
                        "platform_name": "XCP",
                        "xapi": "1.20",
                        "xen": "4.13.5",
                    },
                    "other_config": other_config or {},
                },
            )
            dom0 = self.create(
                "VM",
                {
                    "name_label": f"Control domain on host: {name_label}",
                    "power_state": "Running",
                    "is_control_domain": True,
                    "domain_type": "pv",
                    "resident_on": host,
                    "domid": 0,
                    "memory_static_max": 4 * 1024**3,
                    "VCPUs_max": 8,
                },
            )
            self.update(host, {"control_domain": dom0})
            self._refresh_vm_ops(self.get(dom0, "VM"))
            pools = self.all("pool")
            if pools and pools[0].fields["master"] == NULL_REF:
                self.update(pools[0].ref, {"master": host})
            return host

    def create_network(
        self,
        name_label: str,
        *,
        bridge: str,
        mtu: int = 1500,
        name_description: str = "",
        other_config: Mapping[str, str] | None = None,
    ) -> str:
        """A network (bridge)."""
        return self.create(
            "network",
            {
                "name_label": name_label,
                "name_description": name_description,
                "bridge": bridge,
                "MTU": mtu,
                "managed": True,
                "other_config": other_config or {},
            },
        )

    def create_pif(
        self,
        host: str,
        device: str,
        network: str,
        *,
        mac: str | None = None,
        mtu: int | None = None,
        vlan: int = -1,
        physical: bool = True,
        management: bool = False,
        ip_configuration_mode: str = "None",
        ip: str = "",
        netmask: str = "",
        gateway: str = "",
        dns: str = "",
        other_config: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
        capabilities: Iterable[str] = (),
        disallow_unplug: bool = False,
        currently_attached: bool = False,
    ) -> str:
        """A PIF row. Use :meth:`pif_plug` / :meth:`start_of_day` to bring it up for real."""
        with self.lock:
            host_ref = self.host(host)
            net_ref = self.network(network)
            if properties is None:
                properties = {"gro": "on"} if physical else {}
            return self.create(
                "PIF",
                {
                    "device": device,
                    "host": host_ref,
                    "network": net_ref,
                    "MAC": mac or self.new_mac(),
                    "MTU": mtu if mtu is not None else self.get(net_ref, "network").fields["MTU"],
                    "VLAN": vlan,
                    "physical": physical,
                    "management": management,
                    "managed": True,
                    "ip_configuration_mode": ip_configuration_mode,
                    "IP": ip,
                    "netmask": netmask,
                    "gateway": gateway,
                    "DNS": dns,
                    "primary_address_type": "IPv4",
                    "other_config": other_config or {},
                    "properties": properties,
                    "capabilities": list(capabilities),
                    "disallow_unplug": disallow_unplug,
                    "currently_attached": currently_attached,
                },
            )

    def create_bond(
        self,
        host: str,
        device: str,
        slaves: Iterable[str],
        network: str,
        *,
        mode: str = "balance-slb",
        other_config: Mapping[str, str] | None = None,
        currently_attached: bool = False,
    ) -> str:
        """A bond over existing physical PIFs (refs or devices on ``host``); returns the master PIF."""
        with self.lock:
            host_ref = self.host(host)
            slave_refs = [s if self.find(s) else self.pif(host_ref, s) for s in slaves]
            first = self.get(slave_refs[0], "PIF")
            master = self.create_pif(
                host_ref,
                device,
                network,
                mac=first.fields["MAC"],
                physical=False,
                other_config=other_config,
                properties={"gro": "on"},
                currently_attached=currently_attached,
            )
            bond = self.create(
                "Bond",
                {
                    "master": master,
                    "primary_slave": slave_refs[0],
                    "mode": mode,
                    "properties": {"hashing_algorithm": "src_mac"} if mode == "balance-slb" else {},
                    "links_up": len(slave_refs),
                },
            )
            for slave in slave_refs:
                self.update(slave, {"bond_slave_of": bond, "currently_attached": False})
            return master

    def create_vlan(
        self,
        host: str,
        tagged: str,
        tag: int,
        network: str,
        *,
        other_config: Mapping[str, str] | None = None,
        currently_attached: bool = False,
    ) -> str:
        """A VLAN PIF (same device name as the PIF it is tagged on); returns the VLAN PIF."""
        with self.lock:
            host_ref = self.host(host)
            tagged_ref = tagged if self.find(tagged) else self.pif(host_ref, tagged)
            base = self.get(tagged_ref, "PIF")
            untagged = self.create_pif(
                host_ref,
                base.fields["device"],
                network,
                mac=base.fields["MAC"],
                vlan=tag,
                physical=False,
                other_config=other_config,
                properties={},
                currently_attached=currently_attached,
            )
            self.create("VLAN", {"tagged_PIF": tagged_ref, "untagged_PIF": untagged, "tag": tag})
            return untagged

    def create_vm(
        self,
        name_label: str,
        *,
        host: str | None = None,
        power_state: str = "Halted",
        domain_type: str = "hvm",
        name_description: str = "",
        is_a_template: bool = False,
        is_default_template: bool = False,
        snapshot_of: str | None = None,
        other_config: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
        memory_mib: int = 4096,
        vcpus: int = 2,
        blocked_operations: Mapping[str, str] | None = None,
    ) -> str:
        """A VM row. Running/Paused VMs are resident on ``host`` (default: the master).

        A snapshot (``snapshot_of`` given) is also a template, as in XAPI.
        """
        with self.lock:
            live = power_state in ("Running", "Paused")
            host_ref = self.host(host) if host else self.master_ref
            is_snapshot = snapshot_of is not None
            vm = self.create(
                "VM",
                {
                    "name_label": name_label,
                    "name_description": name_description,
                    "power_state": power_state,
                    "domain_type": domain_type,
                    "resident_on": host_ref if live else NULL_REF,
                    "affinity": host_ref if host else NULL_REF,
                    "domid": next(self._domids) if live else -1,
                    "is_a_template": is_a_template or is_snapshot,
                    "is_default_template": is_default_template,
                    "is_a_snapshot": is_snapshot,
                    "snapshot_of": self.vm(snapshot_of) if snapshot_of else NULL_REF,
                    "snapshot_time": utc_now() if is_snapshot else "19700101T00:00:00Z",
                    "other_config": other_config or {},
                    "tags": list(tags),
                    "memory_static_max": memory_mib * 1024 * 1024,
                    "VCPUs_max": vcpus,
                    "blocked_operations": dict(blocked_operations or {}),
                },
            )
            self._refresh_vm_ops(self.get(vm, "VM"))
            return vm

    def set_guest_metrics(
        self,
        vm: str,
        *,
        os_version: Mapping[str, str] | None = None,
        pv_drivers_version: Mapping[str, str] | None = None,
        pv_drivers_detected: bool | None = None,
        networks: Mapping[str, str] | None = None,
        other: Mapping[str, str] | None = None,
        can_use_hotplug_vif: str = "unspecified",
        can_use_hotplug_vbd: str = "unspecified",
    ) -> str:
        """Create (or replace) the VM's ``VM_guest_metrics``, as the guest agent would report."""
        with self.lock:
            vm_ref = self.vm(vm)
            vm_obj = self.get(vm_ref, "VM")
            pv = dict(pv_drivers_version or {})
            detected = bool(pv) if pv_drivers_detected is None else pv_drivers_detected
            values = {
                "os_version": os_version or {},
                "PV_drivers_version": pv,
                "PV_drivers_up_to_date": detected,
                "PV_drivers_detected": detected,
                "networks": networks or {},
                "other": other or {},
                "last_updated": utc_now(),
                "live": vm_obj.fields["power_state"] == "Running",
                "can_use_hotplug_vif": can_use_hotplug_vif,
                "can_use_hotplug_vbd": can_use_hotplug_vbd,
            }
            old = vm_obj.fields["guest_metrics"]
            if self.find(old) is not None:
                self.update(old, values)
                gm = str(old)
            else:
                gm = self.create("VM_guest_metrics", values)
                self.update(vm_ref, {"guest_metrics": gm})
            self.refresh_vm_operations(vm_ref)  # the features a guest reports decide clean_shutdown
            return gm

    def remove_guest_metrics(self, vm: str) -> None:
        """Drop the VM's guest metrics (no agent / no PV drivers reported)."""
        with self.lock:
            vm_obj = self.get(self.vm(vm), "VM")
            gm = vm_obj.fields["guest_metrics"]
            self.update(vm_obj.ref, {"guest_metrics": NULL_REF})
            if self.find(gm) is not None:
                self.destroy(gm)
            self.refresh_vm_operations(vm_obj.ref)

    def refresh_vm_operations(self, vm: str) -> None:
        """Recompute the VM's and its VIFs' ``allowed_operations`` (XAPI's update_allowed_operations)."""
        with self.lock:
            vm_obj = self.get(self.vm(vm), "VM")
            if not vm_obj.fields["is_control_domain"]:
                self._refresh_vm_ops(vm_obj)
            self._refresh_vif_ops(vm_obj)

    def create_vif(
        self,
        vm: str,
        network: str,
        *,
        device: str | int | None = None,
        mac: str | None = None,
        mtu: int | None = None,
        other_config: Mapping[str, str] | None = None,
        plugged: bool = False,
    ) -> str:
        """A VIF. ``plugged=True`` on a running/paused VM attaches it and applies its offload keys."""
        with self.lock:
            vm_ref = self.vm(vm)
            net_ref = self.network(network)
            vm_obj = self.get(vm_ref, "VM")
            used = {self.get(r, "VIF").fields["device"] for r in vm_obj.fields["VIFs"]}
            if device is None:
                device = next(str(i) for i in itertools.count() if str(i) not in used)
            vif = self.create(
                "VIF",
                {
                    "device": str(device),
                    "network": net_ref,
                    "VM": vm_ref,
                    "MAC": mac or self.new_mac(),
                    "MAC_autogenerated": mac is None,
                    "MTU": mtu if mtu is not None else self.get(net_ref, "network").fields["MTU"],
                    "other_config": other_config or {},
                    "qos_supported_algorithms": ["ratelimit"],
                    "locking_mode": "network_default",
                },
            )
            if plugged and vm_obj.fields["power_state"] in ("Running", "Paused"):
                self._ensure_network_up(net_ref, vm_obj.fields["resident_on"])
                self._attach_vif(self.get(vif, "VIF"))
            self._refresh_vif_ops(vm_obj)
            return vif

    def destroy_object(self, ref: str) -> None:
        """Destroy a row; a VM takes its VIFs and guest metrics with it (as ``VM.destroy``)."""
        with self.lock:
            obj = self.find(ref)
            if obj is None:
                raise KeyError(ref)
            if obj.cls == "VM":
                self.agent.forget(ref)
                for vif in list(obj.fields["VIFs"]):
                    self.destroy_object(vif)
                gm = obj.fields["guest_metrics"]
                if self.find(gm) is not None:
                    self.destroy(gm)
            if obj.cls == "VIF":
                self._vif_effective.pop(ref, None)
            if obj.cls == "PIF":
                self._nic_state.pop(ref, None)
            self.destroy(ref)

    def new_mac(self) -> str:
        """A random locally-administered unicast MAC from the seeded RNG."""
        with self.lock:
            octets = [self._rng.randrange(256) for _ in range(6)]
        octets[0] = (octets[0] & 0xFC) | 0x02
        return ":".join(f"{o:02x}" for o in octets)

    # ====================================================== effective state
    def effective_offload(self, ref: str) -> dict[str, str]:
        """What dom0 actually applied to this VIF/PIF's device; ``{}`` when it has none.

        A VIF has a device only while attached. A physical PIF's NIC is visible while
        the PIF (or, for a bond slave, its bond master) is up. A bond-master or VLAN
        PIF has no kernel device of its own under Open vSwitch, so it is always ``{}``
        there — look at the member NICs instead.
        """
        with self.lock:
            obj = self.find(ref)
            if obj is None or obj.cls not in ("VIF", "PIF"):
                raise XapiError(errors.HANDLE_INVALID, ["VIF", ref])
            if obj.cls == "VIF":
                return dict(self._vif_effective.get(ref, {}))
            if not self._pif_device_up(obj):
                return {}
            if not obj.fields["physical"] and self.network_backend == "openvswitch":
                return {}
            return dict(self._nic_state.get(ref, {}))

    def _pif_device_up(self, pif: Obj) -> bool:
        bond = self.find(pif.fields["bond_slave_of"])
        if bond is not None:
            master = self.find(bond.fields["master"])
            return bool(master is not None and master.fields["currently_attached"])
        return bool(pif.fields["currently_attached"])

    def _attach_vif(self, vif: Obj) -> None:
        # vif-real "online": a fresh backend device, defaults overlaid with valid keys.
        effective = dict.fromkeys(VIF_OFFLOAD_KEYS, DRIVER_DEFAULT)
        effective.update(ethtool_settings(vif.fields["other_config"], VIF_OFFLOAD_KEYS))
        self._vif_effective[vif.ref] = effective
        self.update(vif.ref, {"currently_attached": True})

    def _detach_vif(self, vif: Obj) -> None:
        self._vif_effective.pop(vif.ref, None)
        self.update(vif.ref, {"currently_attached": False})

    def _apply_nic(self, pif: Obj, settings: Mapping[str, str]) -> None:
        state = self._nic_state.setdefault(pif.ref, dict.fromkeys(PIF_OFFLOAD_KEYS, DRIVER_DEFAULT))
        # network_server.ml set_ethtool_offload: defaults (lro off) are added for keys not given.
        state.update({**NETWORKD_OFFLOAD_DEFAULTS, **settings})

    def _configure_device(self, pif: Obj) -> None:
        """networkd's view of ``create_bridges``: (re)apply ethtool settings below ``pif``."""
        fields = pif.fields
        vlan = self.find(fields["VLAN_master_of"])
        if vlan is not None:
            tagged = self.find(vlan.fields["tagged_PIF"])
            if tagged is not None:
                self._configure_device(tagged)
                if self.network_backend == "bridge":
                    props = tagged.fields["properties"]
                    self._apply_nic(pif, ethtool_settings(fields["other_config"], PIF_OFFLOAD_KEYS, props))
            return
        bonds = [b for b in (self.find(r) for r in fields["bond_master_of"]) if b is not None]
        if bonds:
            for slave_ref in bonds[0].fields["slaves"]:
                slave = self.get(slave_ref, "PIF")
                settings = ethtool_settings(slave.fields["other_config"], PIF_OFFLOAD_KEYS, fields["properties"])
                self._apply_nic(slave, settings)
                self.update(slave.ref, {"currently_attached": False})
            if self.network_backend == "bridge":
                self._apply_nic(pif, ethtool_settings(fields["other_config"], PIF_OFFLOAD_KEYS, fields["properties"]))
            return
        if fields["physical"]:
            self._apply_nic(pif, ethtool_settings(fields["other_config"], PIF_OFFLOAD_KEYS, fields["properties"]))

    def _bring_pif_up(self, pif: Obj) -> None:
        self._configure_device(pif)
        self.update(pif.ref, {"currently_attached": True})

    def _ensure_network_up(self, network: str, host: str) -> None:
        # XAPI attaches a VM's networks on the host it starts on, plugging PIFs that are down.
        net = self.find(network)
        for pif_ref in net.fields["PIFs"] if net is not None else []:
            pif = self.get(pif_ref, "PIF")
            f = pif.fields
            if f["host"] == host and not f["currently_attached"] and f["bond_slave_of"] == NULL_REF:
                self._bring_pif_up(pif)

    def start_of_day(self, host: str) -> None:
        """Host (re)start networking: NICs back to driver defaults, then bring PIFs up.

        Brings up what XAPI brings up at start of day (non-slave PIFs that are physical,
        bond masters or IP-configured) plus PIFs already marked attached. VMs are untouched.
        """
        with self.lock:
            host_ref = self.host(host)
            pifs = [self.get(r, "PIF") for r in self.get(host_ref, "host").fields["PIFs"]]
            for pif in pifs:
                self._nic_state.pop(pif.ref, None)
            for pif in pifs:
                f = pif.fields
                if f["bond_slave_of"] != NULL_REF:
                    continue
                required = f["physical"] or f["bond_master_of"] or f["ip_configuration_mode"] != "None"
                if required or f["currently_attached"]:
                    self._bring_pif_up(pif)

    # ============================================================ VIF ops
    def vif_errors(self, vif: Obj) -> dict[str, XapiError | None]:
        """XAPI's VIF valid-operations table (XA ocaml/xapi/xapi_vif_helpers.ml)."""
        table: dict[str, XapiError | None] = {"attach": None, "plug": None, "unplug": None}

        def set_error(err: XapiError, ops: Iterable[str]) -> None:
            for op in ops:
                if table[op] is None:
                    table[op] = err

        current: dict[str, str] = vif.fields["current_operations"]
        if current:
            task, op = next(iter(current.items()))
            set_error(XapiError(errors.OTHER_OPERATION_IN_PROGRESS, ["VIF", vif.ref, op, task]), table)
        vm = self.find(vif.fields["VM"])
        power = vm.fields["power_state"] if vm is not None else "Halted"
        if power == "Running":
            if vif.fields["currently_attached"]:
                set_error(XapiError(errors.DEVICE_ALREADY_ATTACHED, [vif.ref]), ["plug"])
            else:
                set_error(XapiError(errors.DEVICE_ALREADY_DETACHED, [vif.ref]), ["unplug"])
        else:
            vm_ref = vm.ref if vm is not None else str(vif.fields["VM"])
            set_error(XapiError(errors.VM_BAD_POWER_STATE, [vm_ref, "running", power.lower()]), ["plug", "unplug"])
        if vm is not None and power == "Running" and vm.fields["domain_type"] == "hvm":
            gm = self.find(vm.fields["guest_metrics"])
            hotplug = gm.fields["can_use_hotplug_vif"] if gm is not None else "unspecified"
            if hotplug == "no":
                err = XapiError(errors.OPERATION_NOT_ALLOWED, ["VM states it does not support VIF hotplug."])
                set_error(err, ["plug", "unplug"])
            elif hotplug == "unspecified" and not has_pv_drivers(gm):
                set_error(XapiError(errors.VM_MISSING_PV_DRIVERS, [vm.ref]), ["plug", "unplug"])
        return table

    def check_vif_op(self, ref: str, op: str) -> Obj:
        """Raise what XAPI raises if ``op`` (plug/unplug) is not valid now; return the VIF."""
        with self.lock:
            vif = self.get(ref, "VIF")
            err = self.vif_errors(vif)[op]
            if err is not None:
                raise err
            return vif

    def vif_plug(self, ref: str) -> None:
        """``VIF.plug``: hotplug into a running VM; the hotplug script applies the offload keys."""
        with self.lock:
            vif = self.check_vif_op(ref, "plug")
            vm = self.get(vif.fields["VM"], "VM")
            self._ensure_network_up(vif.fields["network"], vm.fields["resident_on"])
            self._attach_vif(vif)
            self._refresh_vif_ops(vm)

    def vif_unplug(self, ref: str, force: bool = False) -> None:
        """``VIF.unplug`` / ``unplug_force``: the backend device goes away with its state."""
        del force  # same checks and outcome in the simulator
        with self.lock:
            vif = self.check_vif_op(ref, "unplug")
            self._detach_vif(vif)
            self._refresh_vif_ops(self.get(vif.fields["VM"], "VM"))

    def refresh_vif_ops(self, vm: Obj) -> None:
        """Recompute the VM's VIFs' allowed_operations (after its guest metrics changed)."""
        self._refresh_vif_ops(vm)

    def _refresh_vif_ops(self, vm: Obj) -> None:
        for ref in vm.fields["VIFs"]:
            vif = self.find(ref)
            if vif is not None:
                allowed = [op for op, err in self.vif_errors(vif).items() if err is None]
                self.update(ref, {"allowed_operations": allowed})

    # ============================================================ VM ops
    def vm_error(self, vm: Obj, op: str) -> XapiError | None:
        """First error XAPI's check_operation_error would report for ``op`` (or None).

        Order as in XA ``ocaml/xapi/xapi_vm_lifecycle.ml`` ``check_operation_error``: the
        VM's ``blocked_operations`` first (``OPERATION_BLOCKED [ref, reason]``), then the
        power state, concurrent operations, templates/snapshots, control domains and,
        last, the guest features an HVM guest must advertise (``check_op_for_feature``)."""
        f = vm.fields
        reason = f["blocked_operations"].get(op)
        if reason is not None:
            return XapiError(errors.OPERATION_BLOCKED, [vm.ref, reason])
        allowed = VM_OP_POWER_STATES[op]
        power: str = f["power_state"]
        if power not in allowed:
            expected = ", ".join(s.lower() for s in allowed)
            return XapiError(errors.VM_BAD_POWER_STATE, [vm.ref, expected, power.lower()])
        current: dict[str, str] = f["current_operations"]
        if current:
            busy = set(current.values())
            concurrent_ok = (op == "hard_shutdown" and "hard_shutdown" not in busy) or (
                op == "hard_reboot" and not busy & {"hard_shutdown", "hard_reboot"}
            )
            if not concurrent_ok:
                task, cur = next(iter(current.items()))
                return XapiError(errors.OTHER_OPERATION_IN_PROGRESS, ["VM", vm.ref, cur, task])
        if f["is_a_template"] and not f["is_a_snapshot"]:
            return XapiError(errors.VM_IS_TEMPLATE, [vm.ref, op])
        if f["is_a_snapshot"] and op not in _SNAPSHOT_OPS:
            return XapiError(errors.VM_IS_SNAPSHOT, [vm.ref, op])
        if f["is_control_domain"] and op not in _CONTROL_DOMAIN_OPS:
            return XapiError(errors.OPERATION_NOT_ALLOWED, ["This operation is not allowed on a control domain"])
        if self._lacks_feature(vm, op):
            return XapiError(errors.VM_LACKS_FEATURE, [vm.ref])
        return None

    def _lacks_feature(self, vm: Obj, op: str) -> bool:
        """XA ``check_op_for_feature`` (strict, as ``with_vm_operation`` calls it): a live HVM guest
        without PV drivers must advertise ``feature-shutdown`` or ``feature-poweroff`` (``-reboot``
        for a reboot) as ``"1"`` in its guest metrics ``other``, else XAPI will not ask it."""
        feature = {"clean_shutdown": "feature-poweroff", "clean_reboot": "feature-reboot"}.get(op)
        f = vm.fields
        if feature is None or f["power_state"] not in ("Running", "Paused"):
            return False
        if f["domain_type"] in ("pv", "pvh", "pv_in_pvh"):
            return False  # has_definitely_booted_pv: PV guests support it implicitly
        gm = self.find(f["guest_metrics"])
        if has_pv_drivers(gm):
            return False
        other: dict[str, str] = gm.fields["other"] if gm is not None else {}
        return other.get("feature-shutdown") != "1" and other.get(feature) != "1"

    def check_vm_op(self, ref: str, op: str) -> Obj:
        """Raise XAPI's error if ``op`` is not allowed on the VM now; return the VM."""
        with self.lock:
            vm = self.get(ref, "VM")
            err = self.vm_error(vm, op)
            if err is not None:
                raise err
            return vm

    def vm_start(self, ref: str, start_paused: bool = False, force: bool = False, host: str | None = None) -> None:
        """``VM.start``: boots on its affinity host (else the least loaded); every VIF is plugged."""
        del force
        with self.lock:
            vm = self.check_vm_op(ref, "start")
            host_ref = self._placement(vm, host)
            self.update(
                ref,
                {
                    "power_state": "Paused" if start_paused else "Running",
                    "resident_on": host_ref,
                    "domid": next(self._domids),
                },
            )
            self._boot_vifs(vm, host_ref)
            self._refresh_vm_ops(vm)
            self._refresh_vif_ops(vm)
            self.agent.on_start(vm)

    def vm_shutdown(self, ref: str, hard: bool = False) -> None:
        """``VM.clean_shutdown`` / ``hard_shutdown``: VIFs detached, no device state left."""
        with self.lock:
            vm = self.check_vm_op(ref, "hard_shutdown" if hard else "clean_shutdown")
            for vif_ref in vm.fields["VIFs"]:
                vif = self.find(vif_ref)
                if vif is not None:
                    self._detach_vif(vif)
            self.update(ref, {"power_state": "Halted", "resident_on": NULL_REF, "domid": -1})
            self._refresh_vm_ops(vm)
            self._refresh_vif_ops(vm)

    def vm_reboot(self, ref: str, hard: bool = False) -> None:
        """``VM.clean_reboot`` / ``hard_reboot``: the domain is rebuilt, so VIF keys re-apply."""
        with self.lock:
            vm = self.check_vm_op(ref, "hard_reboot" if hard else "clean_reboot")
            self.update(ref, {"power_state": "Running", "domid": next(self._domids)})
            self._boot_vifs(vm, vm.fields["resident_on"])
            self._refresh_vm_ops(vm)
            self._refresh_vif_ops(vm)

    def _boot_vifs(self, vm: Obj, host: str) -> None:
        for vif_ref in vm.fields["VIFs"]:
            vif = self.find(vif_ref)
            if vif is not None:
                self._ensure_network_up(vif.fields["network"], host)
                self._attach_vif(vif)

    def _placement(self, vm: Obj, host: str | None) -> str:
        if host is not None:
            return self.host(host)
        affinity = self.find(vm.fields["affinity"])
        if affinity is not None and affinity.cls == "host" and affinity.fields["enabled"]:
            return affinity.ref
        hosts = [h for h in self.all("host") if h.fields["enabled"]]
        return min(hosts, key=lambda h: len(h.fields["resident_VMs"])).ref

    def refresh_vm_ops(self, vm: Obj) -> None:
        """Recompute the VM's allowed_operations (after a clone created it)."""
        self._refresh_vm_ops(vm)

    def _refresh_vm_ops(self, vm: Obj) -> None:
        allowed = [op for op in VM_OP_POWER_STATES if self.vm_error(vm, op) is None]
        self.update(vm.ref, {"allowed_operations": allowed})

    # ============================================================ PIF ops
    def pif_plug(self, ref: str) -> None:
        """``PIF.plug``: brings the PIF up (again) and applies its offload keys; a bond slave is refused."""
        with self.lock:
            pif = self.get(ref, "PIF")
            if pif.fields["bond_slave_of"] != NULL_REF:
                raise XapiError(errors.CANNOT_PLUG_BOND_SLAVE, [ref])
            self._bring_pif_up(pif)

    def pif_unplug(self, ref: str) -> None:
        """``PIF.unplug``, with XAPI's refusals (management, VIFs in use, disallow_unplug)."""
        with self.lock:
            pif = self.get(ref, "PIF")
            f = pif.fields
            if f["management"]:
                raise XapiError(errors.PIF_IS_MANAGEMENT_INTERFACE, [ref])
            net = self.find(f["network"])
            for vif_ref in net.fields["VIFs"] if net is not None else []:
                vif = self.get(vif_ref, "VIF")
                vm = self.find(vif.fields["VM"])
                if vif.fields["currently_attached"] and vm is not None and vm.fields["resident_on"] == f["host"]:
                    raise XapiError(errors.VIF_IN_USE, [str(f["network"]), vif_ref])
            if f["disallow_unplug"]:
                raise XapiError(errors.PIF_DOES_NOT_ALLOW_UNPLUG, [ref])
            if f["bond_slave_of"] != NULL_REF:
                return  # brought down with its bond master, never on its own
            self.update(ref, {"currently_attached": False})

    def pif_set_property(self, ref: str, name: str, value: str) -> None:
        """``PIF.set_property``: only ``gro`` = on|off; stored, copied to bond slaves, applied at once."""
        with self.lock:
            pif = self.get(ref, "PIF")
            if value not in PIF_PROPERTY_VALUES.get(name, ()):
                raise XapiError(errors.INVALID_VALUE, ["properties", f"{name} = {value}"])
            f = pif.fields
            has_properties = f["physical"] or bool(f["bond_master_of"])
            if not has_properties or f["bond_slave_of"] != NULL_REF:
                raise XapiError(errors.CANNOT_CHANGE_PIF_PROPERTIES, [ref])
            props = {**f["properties"], name: value}
            self.update(ref, {"properties": props})
            for bond_ref in f["bond_master_of"]:
                for slave in self.get(bond_ref, "Bond").fields["slaves"]:
                    self.update(slave, {"properties": props})
            vlan_pifs = [self.get(v, "VLAN").fields["untagged_PIF"] for v in f["VLAN_slave_of"]]
            for target in [ref, *vlan_pifs]:
                obj = self.find(target)
                if obj is not None and obj.fields["currently_attached"]:
                    self._bring_pif_up(obj)

    def pif_reconfigure_ip(self, ref: str, mode: str, ip: str, netmask: str, gateway: str, dns: str) -> None:
        """``PIF.reconfigure_ip``: new IP settings; an attached PIF is brought up again (re-applying keys)."""
        with self.lock:
            pif = self.get(ref, "PIF")
            if mode not in ("None", "DHCP", "Static"):
                raise XapiError(errors.INVALID_VALUE, ["mode", mode])
            self.update(ref, {"ip_configuration_mode": mode, "IP": ip, "netmask": netmask,
                              "gateway": gateway, "DNS": dns})
            if pif.fields["currently_attached"]:
                self._bring_pif_up(pif)

    # ====================================================== operations
    def mark_operation(self, ref: str, task: str, op: str) -> None:
        """Record ``op`` by ``task`` in the object's ``current_operations`` (blocks others)."""
        with self.lock:
            obj = self._op_target(ref)
            self.update(ref, {"current_operations": {**obj.fields["current_operations"], task: op}})
            self._refresh_ops(obj)

    def clear_operation(self, ref: str, task: str) -> None:
        """Remove ``task`` from the object's ``current_operations``."""
        with self.lock:
            obj = self.find(ref)
            if obj is None:
                return
            ops = {t: o for t, o in obj.fields["current_operations"].items() if t != task}
            self.update(ref, {"current_operations": ops})
            self._refresh_ops(obj)

    def _op_target(self, ref: str) -> Obj:
        obj = self.find(ref)
        if obj is None or obj.cls not in ("VM", "VIF"):
            raise KeyError(ref)
        return obj

    def _refresh_ops(self, obj: Obj) -> None:
        vm = obj if obj.cls == "VM" else self.find(obj.fields["VM"])
        if vm is not None:
            if not vm.fields["is_control_domain"]:
                self._refresh_vm_ops(vm)
            self._refresh_vif_ops(vm)

    # ============================================================ pool ops
    def move_master(self, host: str) -> None:
        """Give the master role to ``host`` (name or ref)."""
        with self.lock:
            self.update(self.pool_ref, {"master": self.host(host)})


def has_pv_drivers(gm: Obj | None) -> bool:
    """XAPI's test: guest metrics report an integer ``major`` and ``minor`` PV driver version."""
    if gm is None:
        return False
    version: dict[str, str] = gm.fields["PV_drivers_version"]
    try:
        int(version["major"])
        int(version["minor"])
        for optional in ("micro", "build"):  # read when present; a bad one makes the version Unknown
            if optional in version:
                int(version[optional])
    except (KeyError, ValueError):
        return False
    return True
