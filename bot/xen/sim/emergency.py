"""A pool whose master is down: members in *emergency mode*, and promoting one of them.

On a real pool a member that cannot reach its master does not send clients on with
``HOST_IS_SLAVE``: its xapi is in emergency mode and answers *every* call that is not on a
short list (login included) with the error it last set (XA ``ocaml/xapi/api_server.ml``:
``if !Xapi_globs.slave_emergency_mode && not emergency_call then raise
!Xapi_globs.emergency_mode_error``). That error is ``HOST_STILL_BOOTING`` while it starts,
``HOST_MASTER_CANNOT_TALK_BACK [its ip]`` when the master says so, and
``INTERNAL_ERROR [exception]`` when the master cannot be reached at all (XA ``ocaml/xapi/xapi.ml``
``attempt_host_status_check_with_coordinator``). The calls still answered are
``Datamodel.emergency_calls`` (XA ``ocaml/idl/datamodel.ml``), among them
``session.slave_local_login_with_password`` and ``pool.emergency_transition_to_master``
(``xe pool-emergency-transition-to-master``), which makes that member the master;
``pool.recover_slaves`` on the new master then points the other members at it.

The simulator keeps this state here, beside the dispatcher: which hosts are down (their
connections are dropped unanswered), and which members answer with which error.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.xen.sim import errors
from bot.xen.sim.errors import XapiError

if TYPE_CHECKING:
    from bot.xen.sim.api import CallContext, Dispatcher

HOST_STILL_BOOTING = "HOST_STILL_BOOTING"
HOST_MASTER_CANNOT_TALK_BACK = "HOST_MASTER_CANNOT_TALK_BACK"
# What a member's status check sets when the master's address refuses connections (xapi.ml: the
# exception is not a Server_error, so INTERNAL_ERROR [ExnHelper.string_of_exn exn]).
MASTER_UNREACHABLE = [errors.INTERNAL_ERROR, 'Unix.Unix_error(Unix.ECONNREFUSED, "connect", "")']

# The wire names of Datamodel.emergency_calls that the simulator implements.
EMERGENCY_CALLS = frozenset({
    "session.slave_local_login_with_password",
    "session.local_logout",
    "pool.emergency_transition_to_master",
    "host.is_in_emergency_mode",
})


class Emergency:
    """Down hosts and members in emergency mode, consulted by the dispatcher and the server."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.pool = dispatcher.pool
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._errors: dict[str, list[str]] = {}  # member host ref -> its emergency_mode_error
        self._local_sessions: dict[str, str] = {}  # session ref -> the host it is good for

    # ------------------------------------------------------------ state
    def is_down(self, host_ref: str) -> bool:
        with self._lock:
            return host_ref in self._down

    def error_of(self, host_ref: str) -> list[str] | None:
        with self._lock:
            error = self._errors.get(host_ref)
            return list(error) if error is not None else None

    def stop_master(self, member_error: Sequence[str] | None = None) -> str:
        """The master stops answering; every member enters emergency mode. Returns the master ref."""
        with self.pool.lock:
            master = self.pool.master_ref
            members = [h.ref for h in self.pool.all("host") if h.ref != master]
        with self._lock:
            self._down.add(master)
            for ref in members:
                self._errors[ref] = list(member_error or MASTER_UNREACHABLE)
        return master

    def set_error(self, host_ref: str, error: Sequence[str]) -> None:
        """What one member in emergency mode answers (e.g. ``["HOST_STILL_BOOTING"]``)."""
        with self._lock:
            self._errors[host_ref] = [str(e) for e in error]

    def start_host(self, host_ref: str) -> None:
        """A stopped host answers again (as whatever role the pool database gives it)."""
        with self._lock:
            self._down.discard(host_ref)

    def clear(self) -> None:
        with self._lock:
            self._down.clear()
            self._errors.clear()

    # ------------------------------------------------------------ checks
    def check(self, host_ref: str, method: str) -> None:
        """api_server.ml: in emergency mode, anything but an emergency call gets the error."""
        error = self.error_of(host_ref)
        if error is not None and method.removeprefix("Async.") not in EMERGENCY_CALLS:
            raise XapiError(error[0], error[1:])

    # ------------------------------------------------------------ messages
    def register(self) -> None:
        add = self.dispatcher._add
        add("session.slave_local_login_with_password", ("uname", "pwd"), self._local_login, needs_session=False)
        add("session.local_logout", ("session_id",), self._local_logout, needs_session=False)
        add("pool.emergency_transition_to_master", ("session_id",), self._transition, needs_session=False)
        add("host.is_in_emergency_mode", ("session_id",), self._is_in_emergency_mode, needs_session=False)
        add("pool.recover_slaves", (), self._recover_slaves)

    def _local_login(self, ctx: CallContext, a: tuple[Any, ...]) -> Any:
        d = self.dispatcher
        if str(a[0]) != d.user or str(a[1]) != d.password:
            raise XapiError(errors.SESSION_AUTHENTICATION_FAILED, [str(a[0]), "Authentication failure"])
        ref = "OpaqueRef:" + self.pool.new_uuid()
        with self._lock:
            self._local_sessions[ref] = ctx.host
        return ref

    def _local_session(self, ctx: CallContext, ref: object) -> None:
        with self._lock:
            host = self._local_sessions.get(str(ref))
        if host != ctx.host:
            raise XapiError(errors.SESSION_INVALID, [str(ref)])

    def _local_logout(self, ctx: CallContext, a: tuple[Any, ...]) -> Any:
        self._local_session(ctx, a[0])
        with self._lock:
            self._local_sessions.pop(str(a[0]), None)
        return ""

    def _is_in_emergency_mode(self, ctx: CallContext, a: tuple[Any, ...]) -> Any:
        self._local_session(ctx, a[0])
        return self.error_of(ctx.host) is not None

    def _transition(self, ctx: CallContext, a: tuple[Any, ...]) -> Any:
        """This member becomes the master (its copy of the database, without the old sessions)."""
        self._local_session(ctx, a[0])
        with self.pool.lock:
            if ctx.host == self.pool.master_ref and self.error_of(ctx.host) is None:
                return ""  # already the master: nothing to do
            self.pool.move_master(ctx.host)
        with self._lock:
            self._errors.pop(ctx.host, None)
        self.dispatcher.expire_sessions()
        return ""

    def _recover_slaves(self, ctx: CallContext, a: tuple[Any, ...]) -> Any:
        """On the new master: members still in emergency mode follow it again; returns them."""
        with self._lock:
            recovered = [ref for ref in self._errors if ref not in self._down]
            for ref in recovered:
                del self._errors[ref]
        return recovered
