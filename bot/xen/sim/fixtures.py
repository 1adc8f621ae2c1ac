"""Pool fixtures: the shipped ``demo`` pool, generated ``scale:N`` pools, and fixture files.

A fixture is a YAML or JSON document describing a pool compactly; the builder
turns it into store rows and then *boots* it — each host runs its start-of-day
network bring-up and every running VM's attached VIFs go through the same attach
path as ``VM.start`` — so the effective offload state is consistent with the
configuration from the first call, as on a real pool after a reboot.

Schema (every key optional unless marked *required*)::

    pool:
      name: demo                      # pool name_label (default "sim")
      master: xcp-host1               # host name (default: the first host)
      other_config: {}
    networks:                         # referenced by name everywhere below
      - name: "Bond 0+1"              # *required*, network name_label
        bridge: xapi1                 # default xapiN
        mtu: 1500
        description: ""
        other_config: {}
    hosts:
      - name: xcp-host1               # *required*, host name_label
        hostname: xcp-host1           # default: name
        pifs:                         # physical NICs
          - device: eth0              # *required*
            network: "Pool-wide network associated with eth0"   # *required*
            mac: "00:1b:21:3a:4f:10"  # default: generated
            mtu: 1500                 # default: the network's MTU
            management: false
            ip: {mode: Static, address: 192.168.10.11, netmask: 255.255.255.0,
                 gateway: 192.168.10.1, dns: 192.168.10.1}   # default mode None
            other_config: {}          # e.g. {ethtool-tso: "off"}
            properties: {gro: "on"}   # default for physical NICs
            capabilities: []
            disallow_unplug: false
            attached: true            # false = unplugged after boot
        bonds:
          - device: bond0             # *required*, device of the bond-master PIF
            slaves: [eth0, eth1]      # *required*, devices of physical PIFs above
            network: "Bond 0+1"       # *required*
            mode: balance-slb         # balance-slb | active-backup | lacp
            other_config: {}          # of the bond-master PIF
            management: false         # also ip: {...} and disallow_unplug, as for pifs
        vlans:
          - tag: 100                  # *required*
            on: bond0                 # *required*, device of the tagged PIF
            network: "DMZ VLAN 100"   # *required*
            other_config: {}
            attached: true
    vms:
      - name: win2008r2-sql01         # *required*, VM name_label
        description: ""
        host: xcp-host1               # where it runs (default: master); its affinity
        power: Running                # Running | Halted | Paused | Suspended
        domain_type: hvm              # hvm | pv | pvh ...
        template: false               # is_a_template
        default_template: false       # is_default_template (also other_config default_template)
        snapshot_of: <vm name>        # makes it a snapshot (is_a_snapshot, is_a_template)
        memory_mib: 4096
        vcpus: 2
        other_config: {}
        tags: []
        blocked_operations: {clean_shutdown: "reason"}   # XAPI answers OPERATION_BLOCKED [vm, reason]
        guest:                        # omit = no VM_guest_metrics (no agent / no PV drivers)
          os: {name: ..., distro: windows, major: "6", minor: "1", uname: ...}
          pv_drivers: "6.2.0.62"      # major.minor.micro[.build] or a map; omit = none
          pv_detected: true           # default: pv_drivers given
          hotplug_vif: unspecified    # can_use_hotplug_vif: yes | no | unspecified
          hotplug_vbd: unspecified
          ips: ["10.10.0.21", "fe80::1"]   # device 0; or {0: [...], 1: [...]}
          other: {}                   # default: feature-* flags when pv_drivers given
        vifs:
          - network: "Bond 0+1"       # *required*
            device: 0                 # default: next free index
            mac: ...                  # default: generated
            mtu: 1500
            other_config: {ethtool-tx: "off"}
            attached: true            # default: true when the VM is Running/Paused

YAML is read with YAML 1.2 booleans (only ``true``/``false``), so ``off``, ``no``
and ``on`` stay strings — ``ethtool-tx: off`` means the string ``"off"``, as the
classic script writes it, not a boolean that would become ``"false"``.

``scale:N`` builds a deterministic pool of N VMs with 3 VIFs each on
``ceil(N/100)`` hosts (see :func:`scale_fixture`).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bot.xen.sim.pool import Pool

FIXTURE_DIR = Path(__file__).with_name("fixtures")
DEFAULT_GUEST_FEATURES = {
    "feature-shutdown": "1",
    "feature-poweroff": "1",
    "feature-reboot": "1",
    "feature-suspend": "1",
    "feature-vcpu-hotplug": "1",
    "feature-balloon": "1",
    "platform-feature-multiprocessor-suspend": "1",
    "has-vendor-device": "0",
    "data-ts": "1",
}


_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class _Yaml12Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader whose booleans are only true/false (so ``off``/``no`` stay strings)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class FixtureError(ValueError):
    """A fixture document that cannot be built."""


def load_fixture(fixture: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Resolve ``demo``, ``scale:N``, a path to a .yaml/.yml/.json file, or a dict."""
    if isinstance(fixture, Mapping):
        return dict(fixture)
    text = str(fixture)
    if text.startswith("scale:"):
        try:
            count = int(text.split(":", 1)[1])
        except ValueError as exc:
            raise FixtureError(f"bad scale fixture {text!r}: expected scale:N") from exc
        return scale_fixture(count)
    path = Path(text)
    if not path.exists() and (FIXTURE_DIR / f"{text}.yaml").exists():
        path = FIXTURE_DIR / f"{text}.yaml"
    if not path.exists():
        raise FixtureError(f"no fixture {text!r} (not 'demo', 'scale:N' or an existing file)")
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    data = _PARSED.get(key)
    if data is None:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else yaml.load(raw, Loader=_Yaml12Loader)  # noqa: S506
        if not isinstance(data, dict):
            raise FixtureError(f"{path}: top level must be a mapping")
        _PARSED[key] = data
    return copy.deepcopy(data)


# Parsed fixture files by (path, mtime): test suites start hundreds of demo pools.
_PARSED: dict[tuple[str, int], dict[str, Any]] = {}


def build_pool(data: Mapping[str, Any], *, seed: int = 0, network_backend: str = "openvswitch") -> Pool:
    """Create and boot the pool described by ``data`` (see the module docstring)."""
    try:
        return _build(data, seed=seed, network_backend=network_backend)
    except (KeyError, TypeError, ValueError) as exc:
        raise FixtureError(f"invalid fixture: {exc!r}") from exc


def _build(data: Mapping[str, Any], *, seed: int, network_backend: str) -> Pool:
    pool = Pool(seed=seed, network_backend=network_backend)
    meta = data.get("pool") or {}
    with pool.lock:
        pool.create_pool(str(meta.get("name", "sim")), other_config=meta.get("other_config"))
        for index, net in enumerate(data.get("networks") or []):
            pool.create_network(
                str(net["name"]),
                bridge=str(net.get("bridge") or f"xapi{index}"),
                mtu=int(net.get("mtu", 1500)),
                name_description=str(net.get("description", "")),
                other_config=net.get("other_config"),
            )
        unplugged: list[str] = []
        hosts = data.get("hosts") or []
        if not hosts:
            raise FixtureError("a fixture needs at least one host")
        for hdata in hosts:
            host = pool.create_host(str(hdata["name"]), hostname=hdata.get("hostname"))
            for pdata in hdata.get("pifs") or []:
                ip = pdata.get("ip") or {}
                pif = pool.create_pif(
                    host,
                    str(pdata["device"]),
                    str(pdata["network"]),
                    mac=pdata.get("mac"),
                    mtu=pdata.get("mtu"),
                    management=bool(pdata.get("management", False)),
                    ip_configuration_mode=str(ip.get("mode", "None")),
                    ip=str(ip.get("address", "")),
                    netmask=str(ip.get("netmask", "")),
                    gateway=str(ip.get("gateway", "")),
                    dns=str(ip.get("dns", "")),
                    other_config=pdata.get("other_config"),
                    properties=pdata.get("properties"),
                    capabilities=pdata.get("capabilities") or (),
                    disallow_unplug=bool(pdata.get("disallow_unplug", False)),
                )
                if pdata.get("attached") is False:
                    unplugged.append(pif)
            for bdata in hdata.get("bonds") or []:
                master = pool.create_bond(
                    host,
                    str(bdata["device"]),
                    [str(s) for s in bdata["slaves"]],
                    str(bdata["network"]),
                    mode=str(bdata.get("mode", "balance-slb")),
                    other_config=bdata.get("other_config"),
                )
                _bond_dom0_config(pool, master, bdata)
                if bdata.get("attached") is False:
                    unplugged.append(master)
            for vdata in hdata.get("vlans") or []:
                vlan_pif = pool.create_vlan(
                    host,
                    str(vdata["on"]),
                    int(vdata["tag"]),
                    str(vdata["network"]),
                    other_config=vdata.get("other_config"),
                    currently_attached=vdata.get("attached", True) is not False,
                )
                if vdata.get("attached") is False:
                    unplugged.append(vlan_pif)
        if meta.get("master"):
            pool.move_master(str(meta["master"]))
        for host_obj in pool.all("host"):
            pool.start_of_day(host_obj.ref)
        for ref in unplugged:
            pool.set_field(ref, "currently_attached", False)
        vms = list(data.get("vms") or [])
        # Snapshots name the VM they were taken of, so build plain VMs first.
        for vdata in sorted(vms, key=lambda v: v.get("snapshot_of") is not None):
            _build_vm(pool, vdata)
    return pool


def _bond_dom0_config(pool: Pool, master: str, bdata: Mapping[str, Any]) -> None:
    """Management, IP and ``disallow_unplug`` on a bond master (dom0 traffic over the bond)."""
    ip = bdata.get("ip") or {}
    if bdata.get("management"):
        pool.set_field(master, "management", True)
    if ip:
        for field, key in (("ip_configuration_mode", "mode"), ("IP", "address"), ("netmask", "netmask"),
                           ("gateway", "gateway"), ("DNS", "dns")):
            pool.set_field(master, field, str(ip.get(key, "None" if key == "mode" else "")))
    if bdata.get("disallow_unplug"):
        pool.set_field(master, "disallow_unplug", True)


def _build_vm(pool: Pool, vdata: Mapping[str, Any]) -> None:
    power = str(vdata.get("power", "Running"))
    other_config = dict(vdata.get("other_config") or {})
    if vdata.get("default_template"):
        other_config.setdefault("default_template", "true")
    vm = pool.create_vm(
        str(vdata["name"]),
        host=vdata.get("host"),
        power_state=power,
        domain_type=str(vdata.get("domain_type", "hvm")),
        name_description=str(vdata.get("description", "")),
        is_a_template=bool(vdata.get("template", False)),
        is_default_template=bool(vdata.get("default_template", False)),
        snapshot_of=vdata.get("snapshot_of"),
        other_config=other_config,
        tags=vdata.get("tags") or (),
        memory_mib=int(vdata.get("memory_mib", 4096)),
        vcpus=int(vdata.get("vcpus", 2)),
        blocked_operations={str(k): str(v) for k, v in (vdata.get("blocked_operations") or {}).items()},
    )
    guest = vdata.get("guest")
    if guest:
        pv = _pv_version(guest.get("pv_drivers"))
        other = guest.get("other")
        pool.set_guest_metrics(
            vm,
            os_version={str(k): str(v) for k, v in (guest.get("os") or {}).items()},
            pv_drivers_version=pv,
            pv_drivers_detected=guest.get("pv_detected"),
            networks=_networks(guest.get("ips")),
            other=dict(other) if other is not None else (dict(DEFAULT_GUEST_FEATURES) if pv else {}),
            can_use_hotplug_vif=str(guest.get("hotplug_vif", "unspecified")),
            can_use_hotplug_vbd=str(guest.get("hotplug_vbd", "unspecified")),
        )
    live = power in ("Running", "Paused")
    for vif in vdata.get("vifs") or []:
        pool.create_vif(
            vm,
            str(vif["network"]),
            device=vif.get("device"),
            mac=vif.get("mac"),
            mtu=vif.get("mtu"),
            other_config=vif.get("other_config"),
            plugged=bool(vif.get("attached", live)) and live,
        )


def _pv_version(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    parts = str(value).split(".")
    return dict(zip(("major", "minor", "micro", "build"), parts, strict=False))


def _networks(ips: Any) -> dict[str, str]:
    """Guest-agent ``networks`` keys: ``N/ip``, ``N/ipv4/i``, ``N/ipv6/i``."""
    if not ips:
        return {}
    per_device: Mapping[Any, Any] = ips if isinstance(ips, Mapping) else {0: ips}
    result: dict[str, str] = {}
    for device, addresses in per_device.items():
        v4 = [a for a in addresses if ":" not in str(a)]
        v6 = [a for a in addresses if ":" in str(a)]
        if v4:
            result[f"{device}/ip"] = str(v4[0])
        for i, addr in enumerate(v4):
            result[f"{device}/ipv4/{i}"] = str(addr)
        for i, addr in enumerate(v6):
            result[f"{device}/ipv6/{i}"] = str(addr)
    return result


# --------------------------------------------------------------------- scale:N
_SCALE_PROFILES: list[dict[str, Any]] = [
    {
        "prefix": "win2008r2",
        "os": {"name": "Microsoft Windows Server 2008 R2 Standard |C:\\Windows|\\Device\\Harddisk0\\Partition2",
               "distro": "windows", "major": "6", "minor": "1", "spmajor": "1", "spminor": "0"},
        "pv": "6.2.0.62",
    },
    {
        "prefix": "win2019",
        "os": {"name": "Microsoft Windows Server 2019 Standard|C:\\Windows|\\Device\\Harddisk0\\Partition2",
               "distro": "windows", "major": "10", "minor": "0", "spmajor": "0", "spminor": "0"},
        "pv": "9.3.3.107",
        "hotplug": "yes",
    },
    {
        "prefix": "ubuntu",
        "os": {"name": "Ubuntu 22.04.4 LTS", "uname": "5.15.0-105-generic", "distro": "ubuntu",
               "major": "22", "minor": "04"},
        "pv": "7.30.0",
        "hotplug": "yes",
    },
    {
        "prefix": "centos7",
        "os": {"name": "CentOS Linux release 7.9.2009 (Core)", "uname": "3.10.0-1160.el7.x86_64",
               "distro": "centos", "major": "7", "minor": "9"},
        "pv": "7.20.0",
        "hotplug": "yes",
    },
    {
        "prefix": "win7",
        "os": {"name": "Microsoft Windows 7 Professional |C:\\Windows|\\Device\\Harddisk0\\Partition2",
               "distro": "windows", "major": "6", "minor": "1", "spmajor": "1", "spminor": "0"},
        "pv": "7.1.0.1415",
    },
]


def scale_fixture(count: int, *, per_host: int = 100) -> dict[str, Any]:
    """A deterministic pool of ``count`` VMs, 3 VIFs each, ``per_host`` VMs per host.

    Every host has eth0+eth1 bonded (bond0), eth2 as management and VLANs 10/20 on
    the bond. VIFs sit on the bond network and both VLANs. Every 10th VM is halted;
    every 7th has the classic ``ethtool-tx: off`` on VIF 0 and every 11th Xen
    Orchestra's ``"false"``, so offload audits have something to find.
    """
    if count < 0:
        raise FixtureError("scale:N needs N >= 0")
    n_hosts = max(1, math.ceil(count / per_host))
    networks = [
        {"name": "Pool-wide network associated with eth0", "bridge": "xenbr0"},
        {"name": "Pool-wide network associated with eth1", "bridge": "xenbr1"},
        {"name": "Pool-wide network associated with eth2", "bridge": "xenbr2"},
        {"name": "Bond 0+1", "bridge": "xapi1"},
        {"name": "VLAN 10 frontend", "bridge": "xapi2"},
        {"name": "VLAN 20 backend", "bridge": "xapi3"},
    ]
    hosts = []
    for h in range(n_hosts):
        hosts.append(
            {
                "name": f"xcp-scale-{h + 1:03d}",
                "pifs": [
                    {"device": "eth0", "network": "Pool-wide network associated with eth0"},
                    {"device": "eth1", "network": "Pool-wide network associated with eth1"},
                    {
                        "device": "eth2",
                        "network": "Pool-wide network associated with eth2",
                        "management": True,
                        "ip": {"mode": "Static", "address": f"10.0.{h // 250}.{h % 250 + 1}",
                               "netmask": "255.255.0.0", "gateway": "10.0.255.254"},
                    },
                ],
                "bonds": [{"device": "bond0", "slaves": ["eth0", "eth1"], "network": "Bond 0+1"}],
                "vlans": [
                    {"tag": 10, "on": "bond0", "network": "VLAN 10 frontend"},
                    {"tag": 20, "on": "bond0", "network": "VLAN 20 backend"},
                ],
            }
        )
    vms = []
    for i in range(count):
        profile = _SCALE_PROFILES[i % len(_SCALE_PROFILES)]
        vif0: dict[str, str] = {}
        if i % 7 == 0:
            vif0 = {"ethtool-tx": "off"}
        elif i % 11 == 0:
            vif0 = {"ethtool-tx": "false", "ethtool-rx": "true"}
        vms.append(
            {
                "name": f"{profile['prefix']}-{i + 1:05d}",
                "host": hosts[i // per_host]["name"],
                "power": "Halted" if i % 10 == 9 else "Running",
                "guest": {
                    "os": profile["os"],
                    "pv_drivers": profile["pv"],
                    "hotplug_vif": profile.get("hotplug", "unspecified"),
                    "ips": [f"10.{20 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}"],
                },
                "vifs": [
                    {"network": "Bond 0+1", "other_config": vif0},
                    {"network": "VLAN 10 frontend"},
                    {"network": "VLAN 20 backend"},
                ],
            }
        )
    return {"pool": {"name": f"scale-{count}"}, "networks": networks, "hosts": hosts, "vms": vms}
