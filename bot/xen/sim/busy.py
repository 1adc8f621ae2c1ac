"""Synchronous operations on a busy object wait inside XAPI; they do not fail fast.

What XAPI does (XA ``ocaml/xapi/message_forwarding.ml`` ``with_vif_marked`` /
``Xapi_vm_helpers.with_vm_operation``, ``ocaml/xapi/helpers.ml`` ``retry_with_global_lock``):
a VIF or VM operation first *marks* the object (``current_operations``), retrying while the
check says ``OTHER_OPERATION_IN_PROGRESS`` — sleeping 1 to 20 s between tries, woken early when
the other operation ends (``Early_wakeup``), for up to **2 hours** (``Policy.standard``) — then
runs with the mark held and unmarks. Only then does the caller get an answer: a client whose
socket times out meanwhile has not failed, its call still runs later. Any other error (a VIF
operation while the VM is in ``clean_shutdown``: ``OPERATION_NOT_ALLOWED``) is not retried.

The simulator does the same for the messages that have a precheck (VIF plug/unplug, VM power
operations): it waits on the pool's change condition for at most ``busy_wait`` seconds
(``Simulator.start(busy_wait_ms=…)``, ``sim.set_busy_wait``), and a synchronous operation holds
its mark for ``op_time`` seconds before it takes effect (``sim.set_operation_time``) — a slow
hotplug or a guest taking its time to shut down — so that other callers find it busy.
"""

from __future__ import annotations

import fnmatch
import time
from typing import TYPE_CHECKING, Any

from bot.xen.sim import errors
from bot.xen.sim.errors import XapiError
from bot.xen.sim.pool import utc_now

if TYPE_CHECKING:
    from bot.xen.sim.api import CallContext, Dispatcher, Message

BUSY_WAIT_SECONDS = 7200.0  # helpers.ml Repeat_with_uniform_backoff.standard max_total_wait


class Busy:
    """The dispatcher's settings for busy objects, and the blocking synchronous call."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.busy_wait = BUSY_WAIT_SECONDS
        self.op_times: dict[str, float] = {}  # method pattern -> seconds a synchronous call holds its mark

    def op_time(self, method: str) -> float:
        return max((s for p, s in self.op_times.items() if fnmatch.fnmatchcase(method, p)), default=0.0)

    def call(self, ctx: CallContext, method: str, msg: Message, args: tuple[Any, ...]) -> Any:
        """Mark the object (waiting while another operation holds it), run, unmark."""
        assert msg.precheck is not None
        pool = self.dispatcher.pool
        hold = self.op_time(method)
        deadline = time.monotonic() + self.busy_wait
        with pool.lock:
            while True:
                try:
                    marked = msg.precheck(args)
                    break
                except XapiError as exc:
                    remaining = deadline - time.monotonic()
                    if exc.code != errors.OTHER_OPERATION_IN_PROGRESS or remaining <= 0 or pool.closed:
                        raise
                    pool.changed.wait(min(remaining, 1.0))  # woken early when the other operation ends
            if marked is None or hold <= 0:
                return msg.handler(ctx, args)
            task = pool.create("task", {"name_label": method, "status": "pending", "created": utc_now(),
                                        "resident_on": ctx.host, "progress": 0.0, "allowed_operations": [],
                                        "type": "<none/>"})
            pool.mark_operation(marked[0], task, marked[1])
        try:
            end = time.monotonic() + hold
            with pool.lock:
                while time.monotonic() < end and not pool.closed:
                    pool.changed.wait(end - time.monotonic())
        except BaseException:
            self._unmark(marked[0], task)
            raise
        with pool.lock:  # unmark and take effect at once: a waiting caller goes next, not in between
            self._unmark(marked[0], task)
            return msg.handler(ctx, args)

    def _unmark(self, ref: str, task: str) -> None:
        pool = self.dispatcher.pool
        with pool.lock:
            pool.clear_operation(ref, task)
            if pool.find(task) is not None:
                pool.destroy(task)
