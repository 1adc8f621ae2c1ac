"""XAPI message dispatch: sessions, the message table, async tasks and event.from.

The order of checks follows XAPI's generated server (XA ``ocaml/xapi/server.ml``
and ``session_check.ml``), because clients see the *first* error only:

1. unknown method (or an ``Async.`` variant of a message that has none)
   → ``MESSAGE_METHOD_UNKNOWN [method]``;
2. wrong number of parameters → ``MESSAGE_PARAMETER_COUNT_MISMATCH [method,
   expected, received]`` — counts include the session argument;
3. session: an unknown ref → ``SESSION_INVALID [ref]``; a valid session used on a
   host that is not the master → ``HOST_IS_SLAVE [master address]``;
4. the message itself (``HANDLE_INVALID``, power-state checks, ...).

``Async.<Class>.<message>`` returns a task ref at once. The operation's checks
run in the task, so its errors land in ``task.error_info`` rather than in the
call's answer, as on a real pool. While an async VIF/VM operation is in flight
the object carries it in ``current_operations`` and a concurrent operation gets
``OTHER_OPERATION_IN_PROGRESS``.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.xen.sim import errors
from bot.xen.sim.errors import XapiError
from bot.xen.sim.pool import Pool, utc_now
from bot.xen.sim.schema import SCHEMA, ClassSpec, Field, Kind, from_wire, to_wire

# The simulator's documented credentials (a real pool's are whatever root's are).
DEFAULT_USER = "root"
DEFAULT_PASSWORD = "xenroot"  # noqa: S105 - the simulator's documented default, not a secret

Handler = Callable[["CallContext", tuple[Any, ...]], Any]
Precheck = Callable[[tuple[Any, ...]], tuple[str, str] | None]


@dataclass(frozen=True)
class CallContext:
    """Who is calling: the host that received the call and the session used."""

    host: str
    session: str


@dataclass(frozen=True)
class Message:
    """One XAPI message: parameter names (after the session), handler, flags."""

    name: str
    params: tuple[str, ...]
    handler: Handler
    needs_session: bool = True
    asyncable: bool = False
    min_params: int | None = None  # login accepts its trailing params as optional
    precheck: Precheck | None = None  # async: validate and name (ref, op) to mark as in progress


@dataclass
class Session:
    """A logged-in session."""

    ref: str
    uuid: str
    user: str
    this_host: str
    originator: str
    created: float


# XAPI's limits (XA ocaml/xapi/xapi_globs.ml): beyond them the least recently used
# sessions are destroyed and the oldest completed tasks deleted (by its periodic GC;
# here at once). A client that logs in per request and never logs out loses sessions.
MAX_SESSIONS_PER_ORIGINATOR = 500
MAX_ANONYMOUS_SESSIONS = 400  # no originator given
MAX_COMPLETED_TASKS = 200


class Sessions:
    """The session table. Its lock is never held while taking the pool lock."""

    def __init__(
        self, max_per_originator: int = MAX_SESSIONS_PER_ORIGINATOR, max_anonymous: int = MAX_ANONYMOUS_SESSIONS
    ) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._last_active: dict[str, float] = {}
        self.max_per_originator = max_per_originator
        self.max_anonymous = max_anonymous

    def create(self, user: str, host: str, originator: str) -> Session:
        """Log a user in on ``host``, evicting the least recently used sessions over the limit."""
        ident = str(uuidlib.uuid4())
        session = Session("OpaqueRef:" + str(uuidlib.uuid4()), ident, user, host, originator, time.time())
        with self._lock:
            self._sessions[session.ref] = session
            self._last_active[session.ref] = time.monotonic()
            group = [s.ref for s in self._sessions.values() if s.originator == originator]
            limit = self.max_per_originator if originator else self.max_anonymous
            if len(group) > limit:
                group.sort(key=self._last_active.__getitem__)
                for ref in group[: len(group) - limit]:
                    self._forget(ref)
        return session

    def get(self, ref: object) -> Session | None:
        """The session for ``ref`` if it is still valid (and mark it active)."""
        if not isinstance(ref, str):
            return None
        with self._lock:
            session = self._sessions.get(ref)
            if session is not None:
                self._last_active[ref] = time.monotonic()
            return session

    def destroy(self, ref: str) -> None:
        """Log one session out."""
        with self._lock:
            self._forget(ref)

    def clear(self) -> int:
        """Invalidate every session (e.g. xapi restart / master change); return how many."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            self._last_active.clear()
            return count

    def _forget(self, ref: str) -> None:
        self._sessions.pop(ref, None)
        self._last_active.pop(ref, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


class Dispatcher:
    """Routes XAPI calls received by one of the pool's hosts to the pool."""

    def __init__(
        self,
        pool: Pool,
        *,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        task_delay: float = 0.05,
    ) -> None:
        self.pool = pool
        self.user = user
        self.password = password
        self.task_delay = task_delay
        self.sessions = Sessions()
        self.max_completed_tasks = MAX_COMPLETED_TASKS
        self._messages: dict[str, Message] = {}
        self._cancelled: set[str] = set()
        self._register_class_messages()
        self._register_special_messages()
        from bot.xen.sim.emergency import Emergency  # a member in emergency mode (emergency.py)

        self.emergency = Emergency(self)
        self.emergency.register()
        from bot.xen.sim import lifecycle  # VIF.create/destroy, VM.clone/copy/destroy (lifecycle.py)

        lifecycle.register(self)

    # ------------------------------------------------------------------ public
    def message_names(self) -> list[str]:
        """Every message this simulator implements (without ``Async.`` variants)."""
        return sorted(self._messages)

    def call(self, host: str, method: str, params: tuple[Any, ...]) -> Any:
        """Execute ``method`` as received by ``host``; return the wire value or raise XapiError."""
        self.emergency.check(host, method)
        is_async = method.startswith("Async.")
        msg = self._messages.get(method[len("Async.") :] if is_async else method)
        if msg is None or (is_async and not msg.asyncable):
            raise XapiError(errors.MESSAGE_METHOD_UNKNOWN, [method])
        expected = len(msg.params) + (1 if msg.needs_session else 0)
        minimum = expected if msg.min_params is None else msg.min_params
        if not minimum <= len(params) <= expected:
            raise XapiError(errors.MESSAGE_PARAMETER_COUNT_MISMATCH, [method, expected, len(params)])
        if msg.needs_session:
            self._check_session(host, params[0])
            ctx = CallContext(host, params[0])
            args = params[1:]
        else:
            ctx = CallContext(host, "")
            args = params
        if is_async:
            return self._spawn_task(ctx, method, msg, args)
        return msg.handler(ctx, args)

    def expire_sessions(self) -> int:
        """Invalidate every session and wake long-polling callers so they fail too."""
        count = self.sessions.clear()
        with self.pool.lock:
            self.pool.changed.notify_all()
        return count

    # --------------------------------------------------------------- sessions
    def _master_address(self) -> str:
        with self.pool.lock:
            return str(self.pool.get(self.pool.master_ref, "host").fields["address"])

    def _check_session(self, host: str, ref: object) -> None:
        if self.sessions.get(ref) is None:
            raise XapiError(errors.SESSION_INVALID, [str(ref)])
        with self.pool.lock:
            is_master = host == self.pool.master_ref
        if not is_master:
            raise XapiError(errors.HOST_IS_SLAVE, [self._master_address()])

    def _alive(self, ref: str) -> Callable[[], None]:
        def check() -> None:
            if self.sessions.get(ref) is None:
                raise XapiError(errors.SESSION_INVALID, [ref])

        return check

    # --------------------------------------------------------------- registry
    def _add(self, name: str, params: tuple[str, ...], handler: Handler, **flags: Any) -> None:
        self._messages[name] = Message(name, params, handler, **flags)

    def _register_class_messages(self) -> None:
        for cls, spec in SCHEMA.items():
            self._register_class(cls, spec)

    def _register_class(self, cls: str, spec: ClassSpec) -> None:
        pool = self.pool

        def get_all(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            with pool.lock:
                return [o.ref for o in pool.all(cls)]

        def get_all_records(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            with pool.lock:
                return {o.ref: pool.record(o) for o in pool.all(cls)}

        def get_record(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            with pool.lock:
                return pool.record(pool.get(a[0], cls))

        def get_by_uuid(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            with pool.lock:
                return pool.by_uuid(cls, a[0]).ref

        def get_by_name_label(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            label = _str_param(a[0], "label")
            with pool.lock:
                return [o.ref for o in pool.by_name_label(cls, label)]

        self._add(f"{cls}.get_all", (), get_all)
        self._add(f"{cls}.get_all_records", (), get_all_records)
        self._add(f"{cls}.get_record", ("self",), get_record)
        self._add(f"{cls}.get_by_uuid", ("uuid",), get_by_uuid)
        if spec.by_name_label:
            self._add(f"{cls}.get_by_name_label", ("label",), get_by_name_label)
        for fld in spec.fields.values():
            self._register_field(cls, fld)

    def _register_field(self, cls: str, fld: Field) -> None:
        pool = self.pool
        name = fld.name

        def getter(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            with pool.lock:
                return to_wire(fld, pool.get(a[0], cls).fields[name])

        self._add(f"{cls}.get_{name}", ("self",), getter)
        if not fld.rw:
            return

        def setter(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            value = from_wire(fld, a[1], "value")
            with pool.lock:
                pool.update(pool.get(a[0], cls).ref, {name: value})
            return ""

        self._add(f"{cls}.set_{name}", ("self", "value"), setter)
        if fld.kind is Kind.MAP:

            def add_to(ctx: CallContext, a: tuple[Any, ...]) -> Any:
                key, value = _str_param(a[1], "key"), _str_param(a[2], "value")
                with pool.lock:
                    pool.map_add(pool.get(a[0], cls), name, key, value)
                return ""

            def remove_from(ctx: CallContext, a: tuple[Any, ...]) -> Any:
                key = _str_param(a[1], "key")
                with pool.lock:
                    pool.map_remove(pool.get(a[0], cls), name, key)
                return ""

            self._add(f"{cls}.add_to_{name}", ("self", "key", "value"), add_to)
            self._add(f"{cls}.remove_from_{name}", ("self", "key"), remove_from)
        elif fld.kind is Kind.SET:

            def add(ctx: CallContext, a: tuple[Any, ...]) -> Any:
                value = _str_param(a[1], "value")
                with pool.lock:
                    pool.set_add(pool.get(a[0], cls), name, value)
                return ""

            def remove(ctx: CallContext, a: tuple[Any, ...]) -> Any:
                value = _str_param(a[1], "value")
                with pool.lock:
                    pool.set_remove(pool.get(a[0], cls), name, value)
                return ""

            self._add(f"{cls}.add_{name}", ("self", "value"), add)
            self._add(f"{cls}.remove_{name}", ("self", "value"), remove)

    def _register_special_messages(self) -> None:
        pool = self.pool

        # ---- session
        self._add(
            "session.login_with_password",
            ("uname", "pwd", "version", "originator"),
            self._login,
            needs_session=False,
            min_params=2,
        )
        self._add("session.logout", (), self._logout)

        def get_this_host(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            session = self.sessions.get(a[0])
            if session is None:
                raise XapiError(errors.SESSION_INVALID, [str(a[0])])
            return session.this_host

        self._add("session.get_this_host", ("self",), get_this_host)

        # ---- VIF
        def void(action: Callable[[tuple[Any, ...]], None]) -> Handler:
            def handler(ctx: CallContext, a: tuple[Any, ...]) -> Any:
                action(a)
                return ""

            return handler

        def vif_check(op: str) -> Precheck:
            return lambda a: (pool.check_vif_op(_ref_param(a[0]), op).ref, op)

        def vm_check(op: str) -> Precheck:
            return lambda a: (pool.check_vm_op(_ref_param(a[0]), op).ref, op)

        self._add("VIF.plug", ("self",), void(lambda a: pool.vif_plug(_ref_param(a[0]))),
                  asyncable=True, precheck=vif_check("plug"))
        self._add("VIF.unplug", ("self",), void(lambda a: pool.vif_unplug(_ref_param(a[0]))),
                  asyncable=True, precheck=vif_check("unplug"))
        self._add("VIF.unplug_force", ("self",), void(lambda a: pool.vif_unplug(_ref_param(a[0]), force=True)),
                  asyncable=True, precheck=vif_check("unplug"))

        # ---- PIF
        self._add("PIF.plug", ("self",), void(lambda a: pool.pif_plug(_ref_param(a[0]))), asyncable=True)
        self._add("PIF.unplug", ("self",), void(lambda a: pool.pif_unplug(_ref_param(a[0]))), asyncable=True)
        self._add(
            "PIF.set_property",
            ("self", "name", "value"),
            void(lambda a: pool.pif_set_property(_ref_param(a[0]), _str_param(a[1], "name"),
                                                 _str_param(a[2], "value"))),
            asyncable=True,
        )
        self._add(
            "PIF.reconfigure_ip",
            ("self", "mode", "IP", "netmask", "gateway", "DNS"),
            void(lambda a: pool.pif_reconfigure_ip(_ref_param(a[0]), *(_str_param(v, "value") for v in a[1:]))),
            asyncable=True,
        )

        # ---- VM power
        def start(a: tuple[Any, ...]) -> None:
            pool.vm_start(_ref_param(a[0]), _bool_param(a[1], "start_paused"), _bool_param(a[2], "force"))

        def start_on(a: tuple[Any, ...]) -> None:
            host = pool.get(a[1], "host").ref
            pool.vm_start(_ref_param(a[0]), _bool_param(a[2], "start_paused"), _bool_param(a[3], "force"), host)

        self._add("VM.start", ("self", "start_paused", "force"), void(start), asyncable=True,
                  precheck=vm_check("start"))
        self._add("VM.start_on", ("self", "host", "start_paused", "force"), void(start_on), asyncable=True,
                  precheck=vm_check("start"))
        def power_op(op: str) -> Callable[[tuple[Any, ...]], None]:
            hard = op.startswith("hard_")
            if op.endswith("shutdown"):
                return lambda a: pool.vm_shutdown(_ref_param(a[0]), hard=hard)
            return lambda a: pool.vm_reboot(_ref_param(a[0]), hard=hard)

        for op in ("clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot"):
            self._add(f"VM.{op}", ("vm",), void(power_op(op)), asyncable=True, precheck=vm_check(op))

        # VM.blocked_operations writes recompute allowed_operations (XA message_forwarding.ml).
        for name in ("VM.set_blocked_operations", "VM.add_to_blocked_operations", "VM.remove_from_blocked_operations"):
            self._add(name, self._messages[name].params, self._then_refresh_vm(self._messages[name].handler))

        # ---- event
        def event_from(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            classes = a[0]
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise XapiError(errors.FIELD_TYPE_ERROR, ["classes"])
            timeout = from_wire(Field("timeout", Kind.FLOAT), a[2], "timeout")
            return pool.event_from(classes, a[1], float(timeout), alive=self._alive(ctx.session))

        self._add("event.from", ("classes", "token", "timeout"), event_from)
        self._add("event.inject", ("class", "ref"), lambda ctx, a: pool.inject(a[0], a[1]))

        # ---- task
        def task_destroy(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            with pool.lock:
                pool.destroy(pool.get(a[0], "task").ref)
            return ""

        def task_cancel(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            with pool.lock:
                task = pool.get(a[0], "task")
                if task.fields["status"] == "pending":
                    self._cancelled.add(task.ref)
                    pool.update(task.ref, {"status": "cancelling"})
            return ""

        self._add("task.destroy", ("self",), task_destroy)
        self._add("task.cancel", ("task",), task_cancel)

    # --------------------------------------------------------------- handlers
    def _then_refresh_vm(self, handler: Handler) -> Handler:
        def refreshed(ctx: CallContext, a: tuple[Any, ...]) -> Any:
            result = handler(ctx, a)
            self.pool.refresh_vm_operations(_ref_param(a[0]))
            return result

        return refreshed

    def _login(self, ctx: CallContext, a: tuple[Any, ...]) -> Any:
        user = _str_param(a[0], "uname")
        pwd = _str_param(a[1], "pwd")
        originator = str(a[3]) if len(a) > 3 else ""
        with self.pool.lock:
            is_master = ctx.host == self.pool.master_ref
        if not is_master:
            raise XapiError(errors.HOST_IS_SLAVE, [self._master_address()])
        if user != self.user or pwd != self.password:
            raise XapiError(errors.SESSION_AUTHENTICATION_FAILED, [user, "Authentication failure"])
        return self.sessions.create(user, ctx.host, originator).ref

    def _logout(self, ctx: CallContext, a: tuple[Any, ...]) -> Any:
        self.sessions.destroy(ctx.session)
        with self.pool.lock:
            self.pool.changed.notify_all()
        return ""

    # ------------------------------------------------------------------ tasks
    def _spawn_task(self, ctx: CallContext, method: str, msg: Message, args: tuple[Any, ...]) -> str:
        with self.pool.lock:
            task = self.pool.create(
                "task",
                {
                    "name_label": method,
                    "status": "pending",
                    "created": utc_now(),
                    "resident_on": ctx.host,
                    "progress": 0.0,
                    "allowed_operations": ["cancel"],
                    "type": "<none/>",
                },
            )
        threading.Thread(target=self._run_task, args=(task, ctx, msg, args), name=f"xapi-{method}",
                         daemon=True).start()
        return task

    def _run_task(self, task: str, ctx: CallContext, msg: Message, args: tuple[Any, ...]) -> None:
        pool = self.pool
        marked: tuple[str, str] | None = None
        try:
            with pool.lock:
                if msg.precheck is not None:
                    marked = msg.precheck(args)
                    if marked is not None:
                        pool.mark_operation(marked[0], task, marked[1])
            time.sleep(self.task_delay)
            with pool.lock:
                if marked is not None:
                    pool.clear_operation(marked[0], task)
                    marked = None
                if task in self._cancelled:
                    raise XapiError(errors.TASK_CANCELLED, [task])
                result = msg.handler(ctx, args)
                self._finish(task, "success", result=result)
        except XapiError as exc:
            with pool.lock:
                if marked is not None:
                    pool.clear_operation(marked[0], task)
                status = "cancelled" if exc.code == errors.TASK_CANCELLED else "failure"
                self._finish(task, status, error=exc.description)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must still end the task
            with pool.lock:
                self._finish(task, "failure", error=[errors.INTERNAL_ERROR, repr(exc)])

    def _finish(self, task: str, status: str, *, result: Any = "", error: list[str] | None = None) -> None:
        self._cancelled.discard(task)
        if self.pool.find(task) is None:
            return  # destroyed by the client while running; the operation still happened
        done = [t for t in self.pool.all("task") if t.fields["status"] != "pending" and t.ref != task]
        for old in done[: max(0, len(done) + 1 - self.max_completed_tasks)]:
            self.pool.destroy(old.ref)  # XAPI deletes the oldest completed tasks beyond its limit
        wire_result = "" if result in ("", None) else f"<value>{result}</value>"
        self.pool.update(
            task,
            {
                "status": status,
                "progress": 1.0,
                "finished": utc_now(),
                "result": wire_result,
                "error_info": error or [],
                "allowed_operations": [],
            },
        )


def _str_param(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise XapiError(errors.FIELD_TYPE_ERROR, [name])
    return value


def _ref_param(value: Any) -> str:
    # A ref that is not even a string cannot name a row; XAPI reports it as an invalid handle.
    return value if isinstance(value, str) else str(value)


def _bool_param(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise XapiError(errors.FIELD_TYPE_ERROR, [name])
    return value

