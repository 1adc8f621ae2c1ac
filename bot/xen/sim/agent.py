"""The guest agent's reports around ``VM.start``: gone at every start, back after a while.

XAPI deletes a VM's guest metrics at every ``VM.start`` — "Guest metrics will be updated
by the running VM and for now they might be wrong, especially network addresses inherited
by a cloned VM" (XA ``ocaml/xapi/xapi_vm.ml`` ``start`` → ``Xapi_vm_helpers.delete_guest_metrics``)
— so ``VM.guest_metrics`` is ``OpaqueRef:NULL`` until the agent inside the guest reports again,
tens of seconds later on a real pool. A client that reads "no guest metrics on a running VM"
as "no PV drivers" gets every freshly started VM wrong.

The simulator keeps what the agent last reported for each VM and reports it again
``delay`` seconds after the start (a new ``VM_guest_metrics`` row, as XAPI creates one).
``delay=0`` reports at once (within the ``VM.start`` call) — still a new row, so the ref
changes; ``delay=None`` never reports again until a test calls ``set_guest_metrics``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from bot.xen.sim.schema import NULL_REF

if TYPE_CHECKING:
    from bot.xen.sim.pool import Pool
    from bot.xen.sim.store import Obj

# Fields the agent reports; the rest of a VM_guest_metrics row is XAPI's bookkeeping.
_REPORTED = (
    "os_version", "PV_drivers_version", "PV_drivers_up_to_date", "PV_drivers_detected", "networks", "other",
    "can_use_hotplug_vif", "can_use_hotplug_vbd", "memory", "disks", "other_config",
)


class GuestAgent:
    """Per-pool memory of each guest agent's last report, and the timers that re-send it."""

    def __init__(self, pool: Pool, delay: float | None = 0.0) -> None:
        self.pool = pool
        self.delay = delay
        self._last: dict[str, dict[str, Any]] = {}
        self._timers: list[threading.Timer] = []

    def on_start(self, vm: Obj) -> None:
        """Called by ``VM.start`` with the pool lock held: drop the metrics, schedule the report."""
        pool = self.pool
        gm = pool.find(vm.fields["guest_metrics"])
        if gm is not None:
            self._last[vm.ref] = {k: gm.fields[k] for k in _REPORTED if k in gm.fields}
            pool.update(vm.ref, {"guest_metrics": NULL_REF})
            pool.destroy(gm.ref)
        report = self._last.get(vm.ref)
        if report is None or self.delay is None:
            return
        domid = vm.fields["domid"]
        if self.delay <= 0:
            self._report(vm.ref, domid, report)
            return
        timer = threading.Timer(self.delay, self._report_later, (vm.ref, domid, report))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _report_later(self, vm_ref: str, domid: int, report: dict[str, Any]) -> None:
        with self.pool.lock:
            self._report(vm_ref, domid, report)

    def _report(self, vm_ref: str, domid: int, report: dict[str, Any]) -> None:
        pool = self.pool
        vm = pool.find(vm_ref)
        # Only the domain that was started reports: not after a shutdown, a restart or a destroy.
        if vm is None or vm.fields["power_state"] != "Running" or vm.fields["domid"] != domid:
            return
        if pool.find(vm.fields["guest_metrics"]) is not None:
            return  # a test reported something else meanwhile
        from bot.xen.sim.pool import utc_now

        gm = pool.create("VM_guest_metrics", {**report, "last_updated": utc_now(), "live": True})
        pool.update(vm_ref, {"guest_metrics": gm})
        pool.refresh_vif_ops(vm)

    def forget(self, vm_ref: str) -> None:
        self._last.pop(vm_ref, None)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
