"""The one door to XAPI: sessions, master following, retries and bounded parallelism.

``XenAPI.Session`` is a single HTTP connection that is not safe to share between
threads, re-logs in on its own with a fresh session per proxy, and does not
follow ``HOST_IS_SLAVE``. So the gateway keeps one *session ref* per pool and a
small set of proxies (HTTP connections) that all use it, re-logs in once for
everyone when XAPI says the session is gone, and moves to the new master when a
member tells it where the master is. Reads are retried on connection errors;
writes are not blindly retried (the caller reads back instead).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import XenAPI

from bot import metrics
from bot.domain.model import InterfaceKind, PoolInventory
from bot.settings import PoolSettings
from bot.xen.errors import ObjectGone, XapiAuthFailed, XapiError, XapiUnavailable, XenError
from bot.xen.mirror import INVENTORY_CLASSES, RecordMirror, compact_all
from bot.xen.records import Records, build_inventory

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

API_VERSION = "2.0"
ORIGINATOR = "xenbot"
_MAX_REDIRECTS = 3
_MAX_RELOGINS = 2
AUTH_FAILURE_BACKOFF_SECONDS = 30.0
# Login answers that mean "these credentials will not do" (XA ocaml/xapi/xapi_session.ml): a wrong
# password, an AD user without a subject in the pool, a subject without a role (that one comes as
# RBAC_PERMISSION_DENIED ["session.login_with_password", ...]). Each costs XAPI's 5 s delay, and
# repeating them can lock a directory account: back off until an operator fixes the config.
LOGIN_REFUSALS = frozenset({"SESSION_AUTHENTICATION_FAILED", "SESSION_AUTHORIZATION_FAILED", "RBAC_PERMISSION_DENIED"})
# What a member answers to every call, login included, while it cannot reach its master (its
# xapi is in emergency mode: XA ocaml/xapi/api_server.ml, the codes set in ocaml/xapi/xapi.ml).
# Never HOST_IS_SLAVE: the caller must try the other hosts itself to find a promoted member.
EMERGENCY_CODES = frozenset({
    "HOST_STILL_BOOTING", "HOST_MASTER_CANNOT_TALK_BACK", "HOST_UNKNOWN_TO_MASTER", "HOST_HAS_NO_MANAGEMENT_IP",
    "HOST_ITS_OWN_SLAVE", "HOST_BROKEN", "HOST_XAPI_VERSION_HIGHER_THAN_COORDINATOR", "INTERNAL_ERROR",
})


# A connection that answered this recently is trusted with a write (see _Transport).
_WARM_SECONDS = 5.0
_CONNECTION_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError, ssl.SSLError)


class _Transport(xmlrpc.client.Transport):
    """HTTP or HTTPS with a timeout and an explicit TLS context (the stock client has neither knob).

    The stdlib also re-sends a request once when the connection drops before the answer (for
    a cached connection that "has gone cold"). For a read that is harmless; for a write whose
    answer was lost it executes the write a second time. So the gateway turns that off for
    calls that are not idempotent (``resend = False``) and, to keep a cold connection from
    failing them, sends them on a fresh one when the cached one has been idle for a while.
    """

    def __init__(self, *, https: bool, context: ssl.SSLContext | None, timeout: float) -> None:
        super().__init__()
        self._https = https
        self._context = context
        self._timeout = timeout
        self.resend = True
        self._last_answer = 0.0

    def request(self, host: Any, handler: str, request_body: Any, verbose: bool = False) -> Any:
        if self.resend:
            result = super().request(host, handler, request_body, verbose)
        else:
            if time.monotonic() - self._last_answer > _WARM_SECONDS:
                self.close()
            result = self.single_request(host, handler, request_body, verbose)
        self._last_answer = time.monotonic()
        return result

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        cached = self._connection
        if cached[1] is not None and host == cached[0]:
            return cached[1]
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(chost, timeout=self._timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(chost, timeout=self._timeout)
        self._connection = host, conn
        return conn


def tls_context(settings: PoolSettings) -> ssl.SSLContext:
    """Verified by default; ``ca_file`` for pools with their own CA; opt-out is explicit."""
    if not settings.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)


def url_for_address(base_url: str, address: str) -> str:
    """A member's answer names the master by address; keep our scheme and port unless it gives one."""
    parts = urlsplit(base_url)
    address = address.strip()
    if address.count(":") == 1:  # ip:port (the simulator on shared loopback addresses)
        netloc = address
    else:
        host = f"[{address}]" if ":" in address and not address.startswith("[") else address
        netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))


@dataclass
class _Proxy:
    session: Any  # XenAPI.Session used only as an HTTP connection
    transport: _Transport
    url: str
    epoch: int


class PoolGateway:
    """All XAPI traffic for one pool goes through here."""

    def __init__(
        self,
        settings: PoolSettings,
        *,
        retry_delays: Sequence[float] = (0.2, 0.5, 1.0),
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._retry_delays = tuple(retry_delays)
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._master_url = settings.url
        self._known_urls: list[str] = [settings.url]
        self._epoch = 0  # bumped when the master URL changes; old proxies are dropped
        self._session_ref: str | None = None
        self._session_generation = 0
        self._idle: list[_Proxy] = []
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self._executor: ThreadPoolExecutor | None = None
        self._auth_failed_until = 0.0
        self._auth_answer: list[str] = []
        self._permissions: tuple[int, tuple[bool, frozenset[str]] | None] | None = None
        self._closed = False
        self._inventory_lock = threading.Lock()
        self._mirror: RecordMirror | None = None
        self._mirror_at = 0.0
        self.calls = 0  # XAPI calls made, for benchmarks and metrics
        # URL -> what that host answered at the last search for the master ("master", an error code,
        # "connection refused" ...), for /readyz and /xen pools.
        self.host_answers: dict[str, str] = {}

    # -- public surface --------------------------------------------------------

    @property
    def master_url(self) -> str:
        return self._master_url

    def call(self, method: str, *args: Any, idempotent: bool = True) -> Any:
        """Call ``Class.message`` with the session prepended; translate failures to our errors."""
        redirects = relogins = attempt = 0
        while True:
            generation = self._ensure_session()
            try:
                with self._proxy() as proxy:
                    result = self._invoke(proxy, method, args, idempotent)
                metrics.XAPI_CALLS.labels(self.name, method, "").inc()
                return result
            except XenAPI.Failure as failure:
                details = list(failure.details)
                metrics.XAPI_CALLS.labels(self.name, method, str(details[0]) if details else "UNKNOWN").inc()
                if details and details[0] == "HOST_IS_SLAVE" and redirects < _MAX_REDIRECTS:
                    redirects += 1
                    self._follow_master(str(details[1]) if len(details) > 1 else "")
                    continue
                if details and details[0] in EMERGENCY_CODES and details[0] != "INTERNAL_ERROR" and redirects < 1:
                    # Our master URL is a member in emergency mode: look for the master among all hosts.
                    redirects += 1
                    self._invalidate_session(generation)
                    continue
                if details and details[0] == "HANDLE_INVALID":
                    raise ObjectGone(self.name, method, details) from None
                raise XapiError(self.name, method, details) from None
            except xmlrpc.client.Fault as fault:
                # XenAPI turns SESSION_INVALID into Fault(401) when it has no credentials of its own.
                if fault.faultCode == 401 and relogins < _MAX_RELOGINS:
                    relogins += 1
                    self._invalidate_session(generation)
                    continue
                raise XapiError(self.name, method, ["XMLRPC_FAULT", fault.faultCode, fault.faultString]) from None
            except _CONNECTION_ERRORS as exc:
                metrics.XAPI_CALLS.labels(self.name, method, "UNREACHABLE").inc()
                if not idempotent or attempt >= len(self._retry_delays):
                    # The master may be gone for good: the next login asks every known host, so a
                    # member promoted by emergency_transition_to_master is found (a read asks now).
                    self._invalidate_session(generation)
                    if idempotent and redirects < 1 and len(self._known_urls) > 1:
                        redirects += 1
                        continue
                    unsent = isinstance(exc, ConnectionRefusedError)
                    raise XapiUnavailable(self.name, _describe(exc), unsent=unsent) from None
                log.info("xapi %s on %s: %s; retrying", method, self.name, _describe(exc))
                time.sleep(self._retry_delays[attempt])
                attempt += 1

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """Run ``fn`` over items with at most ``max_concurrency`` XAPI calls in flight."""
        materialised = list(items)
        if len(materialised) <= 1:
            return [fn(i) for i in materialised]
        return list(self._pool_executor().map(fn, materialised))

    def inventory(self, max_age: float = 0.0) -> PoolInventory:
        """The whole pool: one ``get_all_records`` per class (in parallel) the first time,
        then only what ``event.from`` says changed since (see ``bot/xen/mirror.py``).

        ``max_age`` > 0 accepts a copy refreshed that recently (inspection commands): a burst
        of ``/xen vifs`` then costs one refresh, not one per person. Plans pass 0 (live: the
        changes are asked for now). Concurrent callers share one refresh.
        """
        with self._inventory_lock:
            mirror = self._mirror
            if mirror is not None and max_age > 0 and time.monotonic() - self._mirror_at <= max_age:
                return mirror.inventory
            started = time.monotonic()
            self._mirror = self._catch_up(mirror)
            self._mirror_at = started
            return self._mirror.inventory

    def _catch_up(self, mirror: RecordMirror | None) -> RecordMirror:
        if mirror is not None and mirror.token and mirror.epoch == self._epoch:
            try:
                result = self.call("event.from", list(INVENTORY_CLASSES), mirror.token, 0.0)
            except XapiError as exc:  # EVENTS_LOST after a long gap, a token the master does not know
                log.info("pool %s: event feed said %s; reading the whole pool again", self.name, exc.short)
            else:
                if mirror.epoch == self._epoch:  # not answered by a new master, whose token differs
                    changed = mirror.absorb(result)
                    changed |= self._reread_stale(mirror, result)
                    if changed:
                        # Patched, not rebuilt: a new snapshot sharing every model the batch left alone.
                        hosts = mirror.inventory.hosts
                        inventory = mirror.refresh()
                        if inventory.hosts is not hosts:
                            self._remember_hosts(h.address for h in inventory.hosts.values())
                    return mirror
        return self._full_read()

    def _reread_stale(self, mirror: RecordMirror, result: Mapping[str, Any]) -> bool:
        """Read again the classes whose ``valid_ref_counts`` say deletions were not reported."""
        stale = mirror.stale_classes(result)
        if not stale:
            return False
        log.info("pool %s: object counts differ for %s (deletions XAPI no longer remembers); reading them again",
                 self.name, ", ".join(stale))
        read = self.map(lambda cls: self.call(f"{cls}.get_all_records"), stale)
        for cls, found in zip(stale, read, strict=True):
            mirror.replace(cls, found)
        return True

    def _full_read(self) -> RecordMirror:
        epoch = self._epoch
        token = self._event_token()
        # Compacted as each class arrives (see mirror.compact), so the parsed originals go at once.
        read = self.map(lambda cls: compact_all(self.call(f"{cls}.get_all_records")), INVENTORY_CLASSES)
        records = dict(zip(INVENTORY_CLASSES, read, strict=True))
        return RecordMirror(token if epoch == self._epoch else "", self._epoch, records, self._build(records))

    def event_token(self) -> str:
        """A token for "from now on", for any subscription, without the full dump that
        ``event.from`` gives for token "".

        ``event.inject`` on the pool object returns one (XAPI's own answer to this). A role that
        may not inject falls back to ``event.from(["pool"], "")``, whose token is only as recent
        as the pool object's last change: safe (nothing is missed), but the next poll reports
        every object changed since then."""
        pool_ref = next(iter(self.call("pool.get_all")), "")
        try:
            return str(self.call("event.inject", "pool", pool_ref, idempotent=False))
        except XapiError as exc:
            log.info("pool %s: event.inject refused (%s); taking a token from event.from", self.name, exc.short)
        return str(self.call("event.from", ["pool"], "", 0.0)["token"])

    def _event_token(self) -> str:
        try:
            return self.event_token()
        except XapiError as exc:
            log.info("pool %s: no event token (%s); each fresh inventory will be a full read", self.name, exc.short)
            return ""

    def _build(self, records: Mapping[str, Records]) -> PoolInventory:
        """A whole inventory, after a full read only (later ones are patched: RecordMirror.refresh)."""
        inventory = build_inventory(self.name, records)
        self._remember_hosts(h.address for h in inventory.hosts.values())
        return inventory

    def record(self, cls: str, ref: str) -> Mapping[str, Any]:
        result = self.call(f"{cls}.get_record", ref)
        return dict(result)

    def other_config(self, kind: InterfaceKind, ref: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.call(f"{_cls(kind)}.get_other_config", ref).items()}

    def add_key(self, kind: InterfaceKind, ref: str, key: str, value: str) -> None:
        """``add_to_other_config``: fails with MAP_DUPLICATE_KEY when the key exists, even with
        the same value. Never re-sent by the gateway: a lost answer raises XapiUnavailable."""
        self.call(f"{_cls(kind)}.add_to_other_config", ref, key, value, idempotent=False)

    def remove_key(self, kind: InterfaceKind, ref: str, key: str) -> None:
        """``remove_from_other_config`` (a no-op for an absent key). Not re-sent either: a first
        try that lands late, after xenbot re-added the key, would remove xenbot's new value."""
        self.call(f"{_cls(kind)}.remove_from_other_config", ref, key, idempotent=False)

    def rrd_updates(self, address: str, query: Mapping[str, str]) -> bytes:
        """``GET /rrd_updates`` on the host at ``address`` with this pool's session and the same
        TLS verification as the XML-RPC calls (bot/xen/rrd.py); one new login if it was refused."""
        from bot.xen import rrd

        url = url_for_address(self._master_url, address)
        context = tls_context(self.settings) if url.startswith("https:") else None
        for attempt in (1, 2):
            generation = self._ensure_session()
            with self._lock:
                session = self._session_ref or ""
            try:
                return rrd.get(url, {**query, "session_id": session}, context, self.settings.timeout_seconds)
            except rrd.RrdUnavailable as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self._invalidate_session(generation)
        raise AssertionError("unreachable")

    def may_write(self, kind: InterfaceKind) -> bool | None:
        """Whether this pool's XAPI account may write a VIF's/PIF's other_config; None if XAPI did
        not say. RBAC (XA ocaml/xapi/rbac.ml): root's session is ``is_local_superuser`` with an
        *empty* ``rbac_permissions``; any other session lists its permissions, lower-case action
        names. Asked once per session (roles change only at the next login)."""
        generation = self._ensure_session()
        cached = self._permissions
        if cached is None or cached[0] != generation:
            try:
                cached = (generation, self._read_permissions())
            except XenError as exc:  # unreachable now: unknown, and asked again next time
                log.info("pool %s: cannot read this session's permissions (%s)", self.name, exc)
                return None
            self._permissions = cached
        if cached[1] is None:
            return None
        superuser, granted = cached[1]
        cls = _cls(kind).lower()
        return superuser or {f"{cls}.add_to_other_config", f"{cls}.remove_from_other_config"} <= granted

    def _read_permissions(self) -> tuple[bool, frozenset[str]] | None:
        with self._lock:
            ref = self._session_ref
        try:
            if self.call("session.get_is_local_superuser", ref):
                return True, frozenset()
            return False, frozenset(str(p).lower() for p in self.call("session.get_rbac_permissions", ref))
        except XapiError as exc:
            log.info("pool %s: cannot read this session's permissions (%s)", self.name, exc.short)
            return None

    def check(self) -> str:
        """Log in (following the master) and return the master's URL; raises when unreachable."""
        self._ensure_session()
        return self._master_url

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ref, self._session_ref = self._session_ref, None
            idle, self._idle = self._idle, []
        if ref:
            try:
                proxy = self._new_proxy(self._master_url, self._epoch)
                getattr(proxy.session, "session.logout")(ref)
                _close_proxy(proxy)
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                log.debug("logout from %s failed: %s", self.name, exc)
        for p in idle:
            _close_proxy(p)
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- sessions and masters --------------------------------------------------

    def _ensure_session(self) -> int:
        with self._lock:
            if self._session_ref is not None:
                return self._session_generation
        with self._login_lock:
            with self._lock:
                if self._session_ref is not None:
                    return self._session_generation
            if self._closed:
                # Shutting down: a call still in flight (a watcher's long-poll) must not log in again
                # after close() logged out, or that new session would never be logged out.
                raise XapiUnavailable(self.name, "the gateway is closed")
            if time.monotonic() < self._auth_failed_until:
                # Repeating a refused password can lock the account; wait for the operator's fix.
                raise XapiAuthFailed(self.name, self.settings.username, self._auth_answer)
            try:
                ref = self._login()
            except XapiAuthFailed as exc:
                self._auth_failed_until = time.monotonic() + AUTH_FAILURE_BACKOFF_SECONDS
                self._auth_answer = exc.answer
                raise
            with self._lock:
                self._session_ref = ref
                self._session_generation += 1
                return self._session_generation

    def _invalidate_session(self, generation: int) -> None:
        """Forget the session unless another thread already logged in again since it failed."""
        with self._lock:
            if self._session_generation == generation:
                self._session_ref = None

    def _login(self) -> str:
        """Log in at the master; members answer HOST_IS_SLAVE with the master's address."""
        password = self.settings.secret().get_secret_value()
        tried: list[str] = []
        with self._lock:
            known = list(self._known_urls)
        candidates = [self._master_url, *[u for u in known if u != self._master_url]]
        answers: dict[str, str] = {}
        try:
            while candidates:
                url = candidates.pop(0)
                if url in tried:
                    continue
                tried.append(url)
                session = self._new_proxy(url, -1).session
                try:
                    session.login_with_password(self.settings.username, password, API_VERSION, ORIGINATOR)
                except XenAPI.Failure as failure:
                    details = list(failure.details)
                    if details and details[0] == "HOST_IS_SLAVE" and len(details) > 1:
                        answers[url] = f"HOST_IS_SLAVE {details[1]}"
                        candidates.insert(0, url_for_address(url, str(details[1])))
                        continue
                    if details and details[0] in LOGIN_REFUSALS:
                        answers[url] = str(details[0])
                        raise XapiAuthFailed(self.name, self.settings.username, details) from None
                    # A member in emergency mode (master down) answers this to every call: go on,
                    # one of the other hosts may have been promoted to master.
                    answers[url] = " ".join(str(d) for d in details) or "UNKNOWN_ERROR"
                    continue
                except _CONNECTION_ERRORS as exc:
                    answers[url] = _describe(exc)
                    continue
                finally:
                    _close_session(session)
                answers[url] = "master"
                self._set_master(url)
                log.info("logged in to pool %s at %s", self.name, url)
                return str(session._session)
        finally:
            self.host_answers = answers
        described = "; ".join(f"{url} {answer}" for url, answer in answers.items()) or "no address to try"
        # No session: no call was sent.
        raise XapiUnavailable(self.name, f"no host answered as master: {described}", unsent=True)

    def _follow_master(self, address: str) -> None:
        new_url = url_for_address(self._master_url, address) if address else self.settings.url
        log.warning("pool %s: %s is not the master any more; following to %s", self.name, self._master_url, new_url)
        self._set_master(new_url)
        with self._lock:
            self._session_ref = None

    def _set_master(self, url: str) -> None:
        with self._lock:
            if url != self._master_url:
                self._master_url = url
                self._epoch += 1
            if url not in self._known_urls:
                self._known_urls.append(url)

    def _remember_hosts(self, addresses: Iterable[str]) -> None:
        """Members we may ask for the master if the current one stops answering."""
        with self._lock:
            for address in addresses:
                if address:
                    url = url_for_address(self.settings.url, address)
                    if url not in self._known_urls:
                        self._known_urls.append(url)

    # -- connections -----------------------------------------------------------

    @contextmanager
    def _proxy(self) -> Iterator[_Proxy]:
        with self._slots:
            with self._lock:
                epoch, url = self._epoch, self._master_url
                proxy = self._idle.pop() if self._idle else None
            if proxy is None or proxy.epoch != epoch:
                if proxy is not None:
                    _close_proxy(proxy)
                proxy = self._new_proxy(url, epoch)
            healthy = False
            try:
                yield proxy
                healthy = True
            except (XenAPI.Failure, xmlrpc.client.Fault):
                healthy = True  # an XAPI answer: the connection itself is fine
                raise
            finally:
                kept = False
                if healthy:
                    with self._lock:
                        if proxy.epoch == self._epoch:
                            self._idle.append(proxy)
                            kept = True
                if not kept:
                    _close_proxy(proxy)

    def _new_proxy(self, url: str, epoch: int) -> _Proxy:
        https = urlsplit(url).scheme == "https"
        transport = _Transport(
            https=https,
            context=tls_context(self.settings) if https else None,
            timeout=self.settings.timeout_seconds,
        )
        return _Proxy(session=XenAPI.Session(url, transport=transport), transport=transport, url=url, epoch=epoch)

    def _invoke(self, proxy: _Proxy, method: str, args: Sequence[Any], idempotent: bool = True) -> Any:
        proxy.transport.resend = idempotent
        with self._lock:
            proxy.session._session = self._session_ref
            self.calls += 1
        target: Any = proxy.session.xenapi
        for part in method.split("."):
            target = getattr(target, part)
        return target(*args)

    def _pool_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.settings.max_concurrency, thread_name_prefix=f"xapi-{self.name}"
                )
            return self._executor


def _cls(kind: InterfaceKind) -> str:
    return "VIF" if kind == "vif" else "PIF"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); set ca_file, or verify_tls = false"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _close_session(session: Any) -> None:
    with contextlib.suppress(Exception):  # closing a socket that may already be gone
        session("close")()


def _close_proxy(proxy: _Proxy) -> None:
    _close_session(proxy.session)


class Gateways:
    """The gateways of every configured pool, by name."""

    def __init__(self, pools: Iterable[PoolSettings], **kwargs: Any) -> None:
        self._by_name = {p.name.lower(): PoolGateway(p, **kwargs) for p in pools}

    def __iter__(self) -> Iterator[PoolGateway]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def names(self) -> list[str]:
        return [g.name for g in self._by_name.values()]

    def get(self, name: str) -> PoolGateway:
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise KeyError(name) from None

    def warm_up(self, timeout: float) -> dict[str, str]:
        """Read every pool's inventory now, in parallel, for up to ``timeout`` seconds.

        Run before serving: the first read of a large pool is the one expensive one (a 500-VM
        pool is about half a second of XML-RPC parsing under the GIL), and done on the first
        command instead it holds up every ack arriving meanwhile; after it, reads are event-fed
        increments. A pool that is down or slow is not waited for beyond ``timeout``: its first
        command reads it instead. Returns each pool's outcome, for the log."""
        if not self._by_name:
            return {}
        executor = ThreadPoolExecutor(max_workers=len(self), thread_name_prefix="xenbot-warm-up")
        reads = {executor.submit(gateway.inventory): gateway.name for gateway in self}
        finished, _ = wait(reads, timeout)
        executor.shutdown(wait=False)
        outcomes = {}
        for read, name in reads.items():
            failure = read.exception() if read in finished else None
            outcomes[name] = "still reading" if read not in finished else "read" if failure is None else str(failure)
        return outcomes

    def close(self) -> None:
        for gateway in self._by_name.values():
            gateway.close()
