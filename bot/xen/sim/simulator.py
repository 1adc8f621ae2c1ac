"""The :class:`Simulator` facade: build a pool, serve it over HTTP, control it from tests.

Everything a test or ``xenbot demo`` needs is here, in one object, so nobody has
to wire store, dispatcher, faults and server together by hand::

    from bot.xen.sim import Simulator

    with Simulator.start(fixture="demo") as sim:
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password("root", "xenroot", "1.0", "test")
        vif = sim.pool.vif("pfsense-fw01", 0)
        assert sim.effective_offload(vif)["tx"] == "off"

The same controls are reachable over XML-RPC as ``sim.*`` methods on any host's
URL, without a session — see :meth:`Simulator.sim_call` for the list. They are a
separate namespace on purpose: nothing simulator-only ever appears as a XAPI
field or message, so code under test cannot come to depend on it by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from bot.xen.sim.api import DEFAULT_PASSWORD, DEFAULT_USER, Dispatcher
from bot.xen.sim.faults import Faults
from bot.xen.sim.fixtures import build_pool, load_fixture
from bot.xen.sim.pool import Pool
from bot.xen.sim.server import Endpoint, XapiServer


class Simulator:
    """A running simulated pool. Create with :meth:`start`; stop with :meth:`stop` or ``with``."""

    def __init__(self, pool: Pool, dispatcher: Dispatcher, faults: Faults, server: XapiServer) -> None:
        self.pool = pool
        self.dispatcher = dispatcher
        self.faults = faults
        self.server = server
        self._stopped = False
        self.certificates: dict[str, str] = {}  # host name -> its certificate (PEM), with tls=True
        self.ca_file: Path | None = None  # all hosts' certificates in one PEM bundle, with tls=True
        self._tls_folder: Path | None = None
        self._sim_methods: dict[str, Callable[..., Any]] = {
            "sim.info": self.info,
            "sim.get_effective_offload": self.effective_offload,
            "sim.get_call_counts": self.call_counts,
            "sim.reset_call_counts": self.reset_call_counts,
            "sim.fail_calls": self._rpc_fail_calls,
            "sim.drop_connections": self._rpc_drop_connections,
            "sim.add_latency": lambda ms, pattern="*": self.faults.latency(float(ms), str(pattern)),
            "sim.set_latency": self.set_latency,
            "sim.hang": lambda pattern="*": self.faults.hang(str(pattern)),
            "sim.release": self.faults.release,
            "sim.clear_faults": self.clear_faults,
            "sim.list_faults": lambda: [r.describe() for r in self.faults.rules()],
            "sim.remove_fault": lambda rule_id: self.faults.remove(int(rule_id)),
            "sim.expire_sessions": self.expire_sessions,
            "sim.move_master": self.move_master,
            "sim.forget_events": self.pool.forget_events,
            "sim.start_of_day": self.pool.start_of_day,
            "sim.restart_agent": self.restart_agent,
            "sim.set_task_delay": self.set_task_delay,
            "sim.set_guest_agent_delay": self.set_guest_agent_delay,
            "sim.stop_master": self.stop_master,
            "sim.set_emergency_error": self.set_emergency_error,
            "sim.start_host": self.start_host,
            "sim.add_user": self.add_user,
            "sim.set_busy_wait": self.set_busy_wait,
            "sim.set_operation_time": self.set_operation_time,
            "sim.set_login_failure_delay": self.set_login_failure_delay,
        }

    # ---------------------------------------------------------------- start
    @classmethod
    def start(
        cls,
        fixture: str | Path | Mapping[str, Any] = "demo",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        latency_ms: float = 0.0,
        seed: int = 0,
        task_delay_ms: float = 50.0,
        event_batch_ms: float = 50.0,
        network_backend: str = "openvswitch",
        guest_agent_delay_ms: float | None = 0.0,
        login_failure_delay_ms: float = 5000.0,
        busy_wait_ms: float | None = None,
        tls: bool = False,
    ) -> Simulator:
        """Build the pool from ``fixture`` and serve every host; returns once listening.

        ``fixture`` is ``"demo"``, ``"scale:N"``, a path to a YAML/JSON file, or an
        already-parsed dict. ``port=0`` picks a free port. ``task_delay_ms`` is how
        long an ``Async.`` task stays ``pending``; ``event_batch_ms`` is the pause
        after a wake-up before ``event.from`` answers (XAPI uses 50 ms). ``guest_agent_delay_ms``
        is how long after ``VM.start`` the guest agent reports again (``VM.guest_metrics`` is
        NULL meanwhile, as in XAPI); 0 reports within the call, ``None`` never. A failed login
        answers after ``login_failure_delay_ms`` (XAPI: 5 s). The fixture's ``users`` are the
        directory users besides root (see :meth:`add_user`). ``busy_wait_ms`` bounds how long a
        synchronous operation on a busy object waits before ``OTHER_OPERATION_IN_PROGRESS`` (XAPI:
        2 hours; the fixture's ``settings: {busy_wait_ms: N}`` when not given). ``tls=True`` serves
        each host over HTTPS with its own self-signed certificate (tls.py); ``ca_file`` is then a
        bundle of them all.
        """
        data = load_fixture(fixture)
        pool = build_pool(data, seed=seed, network_backend=network_backend)
        pool.agent.delay = None if guest_agent_delay_ms is None else guest_agent_delay_ms / 1000.0
        pool.event_batch_delay = event_batch_ms / 1000.0
        dispatcher = Dispatcher(pool, user=user, password=password, task_delay=task_delay_ms / 1000.0)
        dispatcher.users.failure_delay = login_failure_delay_ms / 1000.0
        busy_wait = busy_wait_ms if busy_wait_ms is not None else (data.get("settings") or {}).get("busy_wait_ms")
        if busy_wait is not None:
            dispatcher.busy.busy_wait = float(busy_wait) / 1000.0
        for entry in data.get("users") or []:
            dispatcher.users.add(str(entry["name"]), str(entry["password"]), str(entry.get("role") or ""),
                                 bool(entry.get("subject", True)))
        faults = Faults(seed=seed)
        server = XapiServer(dispatcher, faults, latency_ms=latency_ms)
        sim = cls(pool, dispatcher, faults, server)
        server.sim_handler = sim.sim_call
        with pool.lock:
            hosts = [h.ref for h in pool.all("host")]
        endpoints = server.bind(hosts, host, port)
        with pool.lock:
            for ep in endpoints:
                pool.set_field(ep.host_ref, "address", ep.address)
        if tls:
            sim._serve_tls()
        server.start()
        return sim

    def _serve_tls(self) -> None:
        import tempfile

        from bot.xen.sim.tls import host_certificate

        folder = Path(tempfile.mkdtemp(prefix="xenbot-sim-tls-"))
        self._tls_folder = folder
        contexts = {}
        for ep in self.server.endpoints:
            fields = self.pool.fields(ep.host_ref)
            name = str(fields["name_label"])
            cert = host_certificate(name, [str(fields["hostname"]), name], [ep.ip], folder)
            self.certificates[name] = cert.cert_pem
            contexts[ep.host_ref] = cert.server_context()
        self.ca_file = folder / "pool-bundle.pem"
        self.ca_file.write_text("".join(self.certificates.values()), encoding="utf-8")
        self.server.enable_tls(contexts)

    def stop(self) -> None:
        """Stop serving: listeners and connections closed, hung and long-polling calls end."""
        if self._stopped:
            return
        self._stopped = True
        self.pool.agent.close()
        self.pool.close()
        self.server.stop()
        if self._tls_folder is not None:
            import shutil

            shutil.rmtree(self._tls_folder, ignore_errors=True)

    def __enter__(self) -> Simulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ addresses
    @property
    def name(self) -> str:
        """The pool's name_label (e.g. ``demo``)."""
        with self.pool.lock:
            return str(self.pool.all("pool")[0].fields["name_label"])

    @property
    def user(self) -> str:
        """The user name that logs in."""
        return self.dispatcher.user

    @property
    def password(self) -> str:
        """The password that logs in."""
        return self.dispatcher.password

    @property
    def url(self) -> str:
        """URL of the *current* master (changes after :meth:`move_master`)."""
        return self._endpoint(self.pool.master_ref).url

    @property
    def host_urls(self) -> dict[str, str]:
        """Host name_label -> URL, for every host."""
        with self.pool.lock:
            return {str(self.pool.get(ep.host_ref, "host").fields["name_label"]): ep.url
                    for ep in self.server.endpoints}

    def host_url(self, host: str) -> str:
        """URL of one host (name, uuid or ref)."""
        return self._endpoint(self.pool.host(host)).url

    def _endpoint(self, host_ref: str) -> Endpoint:
        for ep in self.server.endpoints:
            if ep.host_ref == host_ref:
                return ep
        raise KeyError(host_ref)

    def info(self) -> dict[str, Any]:
        """Pool name, master URL, host URLs and credentials."""
        return {
            "pool": self.name,
            "url": self.url,
            "host_urls": self.host_urls,
            "user": self.user,
            "password": self.password,
            "shared_port": self.server.shared_port,
            "ca_file": str(self.ca_file or ""),
        }

    # -------------------------------------------------------------- control
    def effective_offload(self, ref: str) -> dict[str, str]:
        """What dom0 applied to a VIF/PIF device: ``{"rx": "on", ...}``, ``{}`` when none."""
        return self.pool.effective_offload(ref)

    def call_counts(self) -> dict[str, int]:
        """XAPI calls received per method name since start / the last reset (``sim.*`` excluded)."""
        return self.server.counts.snapshot()

    def reset_call_counts(self) -> None:
        """Zero the per-method call counts."""
        self.server.counts.reset()

    def expire_sessions(self) -> int:
        """Invalidate every session (clients get ``SESSION_INVALID``); returns how many."""
        return self.dispatcher.expire_sessions()

    def move_master(self, host: str, keep_sessions: bool = False) -> None:
        """Make ``host`` (name, uuid or ref) the master.

        The old master then answers ``HOST_IS_SLAVE [new master address]``. By default
        sessions are dropped, as after an emergency master transition (the new
        master's database has none of them): callers get ``SESSION_INVALID``, and a
        ``XenAPI.Session`` that re-logs in against the old master then gets
        ``HOST_IS_SLAVE``. ``keep_sessions=True`` models ``pool.designate_new_master``.
        """
        self.pool.move_master(host)
        if not keep_sessions:
            self.dispatcher.expire_sessions()

    def stop_master(self, member_error: list[str] | None = None) -> str:
        """The master stops answering (connections dropped unanswered) and every member enters
        emergency mode, answering every call with ``member_error`` (default ``INTERNAL_ERROR``, as
        when the master refuses connections) — see bot/xen/sim/emergency.py. Returns its name."""
        ref = self.dispatcher.emergency.stop_master(member_error)
        return str(self.pool.fields(ref)["name_label"])

    def set_emergency_error(self, host: str, error: list[str]) -> None:
        """What one member in emergency mode answers, e.g. ``["HOST_STILL_BOOTING"]``."""
        self.dispatcher.emergency.set_error(self.pool.host(host), error)

    def start_host(self, host: str) -> None:
        """A host stopped by ``stop_master`` answers again."""
        self.dispatcher.emergency.start_host(self.pool.host(host))

    def restart_agent(self, host: str) -> None:
        """``xe-toolstack-restart`` on ``host`` run by someone else (e.g. in dom0's shell): PIF keys
        re-applied, ``agent_start_time`` updated, sessions lost if it is the master (toolstack.py)."""
        from bot.xen.sim import toolstack

        ref = self.pool.host(host)
        toolstack.restart_agent(self.pool, ref)
        if ref == self.pool.master_ref:
            self.dispatcher.expire_sessions()

    def add_user(self, name: str, password: str, role: str = "", subject: bool = True) -> None:
        """A directory user who may log in with ``role`` (pool-admin, pool-operator, vm-power-admin,
        vm-admin, vm-operator, read-only). ``role=""`` is a subject without roles (login gets
        ``RBAC_PERMISSION_DENIED``); ``subject=False`` one the pool does not know
        (``SESSION_AUTHORIZATION_FAILED``). See bot/xen/sim/rbac.py."""
        self.dispatcher.users.add(str(name), str(password), str(role), bool(subject))

    def set_login_failure_delay(self, ms: float) -> None:
        """How long a failed login takes to answer (XAPI: 5000 ms)."""
        self.dispatcher.users.failure_delay = float(ms) / 1000.0

    def set_busy_wait(self, ms: float) -> None:
        """How long a synchronous VIF/VM operation waits for a busy object (XAPI: 2 h) — bot/xen/sim/busy.py."""
        self.dispatcher.busy.busy_wait = float(ms) / 1000.0

    def set_operation_time(self, ms: float, pattern: str = "*") -> None:
        """Synchronous VIF/VM operations matching ``pattern`` hold the object busy for ``ms`` before
        they take effect and answer (a slow hotplug, a guest slow to shut down); 0 removes it."""
        if float(ms) <= 0:
            self.dispatcher.busy.op_times.pop(str(pattern), None)
        else:
            self.dispatcher.busy.op_times[str(pattern)] = float(ms) / 1000.0

    def set_latency(self, ms: float) -> None:
        """Global latency added to every XAPI call (not to ``sim.*``)."""
        self.server.latency_s = float(ms) / 1000.0

    def set_task_delay(self, ms: float) -> None:
        """How long ``Async.`` tasks stay pending before they run."""
        self.dispatcher.task_delay = float(ms) / 1000.0

    def set_guest_agent_delay(self, ms: float | None) -> None:
        """How long after ``VM.start`` guest agents report again (``None``/negative: never)."""
        self.pool.agent.delay = None if ms is None or float(ms) < 0 else float(ms) / 1000.0

    def clear_faults(self) -> None:
        """Remove all fault rules, release hung calls, reset the global latency to 0."""
        self.faults.clear()
        self.server.latency_s = 0.0

    # ------------------------------------------------------------ sim.* RPC
    def sim_call(self, method: str, params: tuple[Any, ...]) -> Any:
        """Dispatch a ``sim.*`` XML-RPC call (no session; plain values; errors as faults).

        Methods: ``sim.info()``, ``sim.get_effective_offload(ref)``,
        ``sim.get_call_counts()``, ``sim.reset_call_counts()``,
        ``sim.fail_calls(pattern, code, params=[], share=1.0, times=-1, seed=-1)`` -> rule id,
        ``sim.drop_connections(pattern="*", share=1.0, after_execute=False, times=-1, seed=-1)`` -> id,
        ``sim.add_latency(ms, pattern="*")`` -> id, ``sim.set_latency(ms)``,
        ``sim.hang(pattern="*")`` -> id, ``sim.release()``, ``sim.clear_faults()``,
        ``sim.list_faults()``, ``sim.remove_fault(id)``, ``sim.expire_sessions()`` -> n,
        ``sim.move_master(host, keep_sessions=False)``, ``sim.forget_events()``,
        ``sim.start_of_day(host)``, ``sim.set_task_delay(ms)``.
        ``times``/``seed`` of -1 mean unlimited / derived from the simulator seed.
        Void methods return ``True``.
        """
        func = self._sim_methods.get(method)
        if func is None:
            raise LookupError(f"unknown simulator method {method}")
        result = func(*params)
        return True if result is None else result

    def _rpc_fail_calls(
        self,
        pattern: str,
        code: str,
        params: list[str] | None = None,
        share: float = 1.0,
        times: int = -1,
        seed: int = -1,
    ) -> int:
        return self.faults.fail(str(pattern), str(code), params or [], share=float(share),
                                times=None if int(times) < 0 else int(times),
                                seed=None if int(seed) < 0 else int(seed))

    def _rpc_drop_connections(
        self, pattern: str = "*", share: float = 1.0, after_execute: bool = False, times: int = -1, seed: int = -1
    ) -> int:
        return self.faults.drop(str(pattern), share=float(share), after_execute=bool(after_execute),
                                times=None if int(times) < 0 else int(times),
                                seed=None if int(seed) < 0 else int(seed))
