"""Two more moments when stored offload keys take effect: a toolstack restart and a live migration.

* ``host.restart_agent`` (``xe-toolstack-restart``) — XA ``ocaml/xapi/xapi_host.ml``
  ``restart_agent`` runs the restart script a second after answering; the new xapi's start of
  day (``ocaml/xapi/xapi.ml`` → ``Xapi_pif.start_of_day_best_effort_bring_up``) clears
  networkd's state and plugs every PIF ``calculate_pifs_required_at_start_of_day`` selects
  (not bond slaves; physical, bond masters, or with IP configuration), so PIF ``ethtool-*`` keys
  are applied again — without a host reboot. The NICs themselves are not reset: a key that is
  absent is still not applied (networkd's defaults, ``lro off``, are). ``dbsync_slave.ml`` then
  writes ``host.other_config:agent_start_time`` (OCaml ``string_of_float``, e.g.
  ``"1764480000."``): a client sees the restart through events. A restart on the master also
  loses every session (sessions are ``PersistNothing``) and wakes long-polls with
  ``SESSION_INVALID``.
* ``VM.pool_migrate(vm, host, options)`` — only from Running (``xapi_vm_lifecycle.ml``
  ``allowed_power_states``); the domain is rebuilt on the destination, so each attached VIF gets a
  new backend device and ``vif-real`` applies its keys (``ocaml/xenopsd/scripts/vif-real``).
  ``resident_on`` and ``domid`` change; guest metrics stay.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bot.xen.sim import errors
from bot.xen.sim.errors import XapiError
from bot.xen.sim.schema import NULL_REF

if TYPE_CHECKING:
    from bot.xen.sim.api import CallContext, Dispatcher
    from bot.xen.sim.pool import Pool


def restart_agent(pool: Pool, host: str, now: float | None = None) -> None:
    """The toolstack of ``host`` restarts: required PIFs are plugged again, NIC state kept."""
    with pool.lock:
        host_ref = pool.host(host)
        for pif_ref in pool.get(host_ref, "host").fields["PIFs"]:
            pif = pool.get(pif_ref, "PIF")
            f = pif.fields
            if f["bond_slave_of"] != NULL_REF:
                continue
            if f["physical"] or f["bond_master_of"] or f["ip_configuration_mode"] != "None" or f["currently_attached"]:
                pool._bring_pif_up(pif)
        stamp = f"{int(time.time() if now is None else now)}."  # string_of_float
        other = {**pool.get(host_ref, "host").fields["other_config"], "agent_start_time": stamp}
        pool.update(host_ref, {"other_config": other})


def pool_migrate(pool: Pool, vm_ref: str, host: str) -> None:
    """Live migration within the pool: VIF devices rebuilt on the destination (keys take effect)."""
    with pool.lock:
        vm = pool.get(vm_ref, "VM")
        destination = pool.get(host, "host").ref
        power = str(vm.fields["power_state"])
        if power != "Running":
            raise XapiError(errors.VM_BAD_POWER_STATE, [vm.ref, "running", power.lower()])
        err = pool.vm_error(vm, "clean_reboot")  # templates, snapshots, dom0, operations in progress
        if err is not None and err.code != errors.VM_BAD_POWER_STATE:
            raise XapiError(err.code, [p.replace("clean_reboot", "pool_migrate") for p in err.params])
        pool.update(vm.ref, {"resident_on": destination, "domid": next(pool._domids)})
        for ref in vm.fields["VIFs"]:
            vif = pool.find(ref)
            if vif is not None and vif.fields["currently_attached"]:
                pool._ensure_network_up(vif.fields["network"], destination)
                pool._attach_vif(vif)


def register(dispatcher: Dispatcher) -> None:
    """``host.restart_agent`` and ``VM.pool_migrate`` (sync and Async)."""
    pool = dispatcher.pool

    def restart(ctx: CallContext, a: tuple[Any, ...]) -> Any:
        host_ref = pool.get(str(a[0]), "host").ref
        is_master = host_ref == pool.master_ref
        restart_agent(pool, host_ref)
        if is_master:
            dispatcher.expire_sessions()  # the master's xapi keeps no sessions across a restart
        return ""

    def migrate(ctx: CallContext, a: tuple[Any, ...]) -> Any:
        if not isinstance(a[2], dict):
            raise XapiError(errors.FIELD_TYPE_ERROR, ["options"])
        pool_migrate(pool, str(a[0]), str(a[1]))
        return ""

    dispatcher._add("host.restart_agent", ("host",), restart, asyncable=True)
    dispatcher._add("VM.pool_migrate", ("vm", "host", "options"), migrate, asyncable=True)
