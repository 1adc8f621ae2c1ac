"""A fake Slack Web API server that the real ``slack_sdk`` clients talk to over real HTTP.

Why this exists: the project rule is that integration tests exercise the app's real
``slack_sdk.WebClient`` (its request encoding, retry handlers, ``files_upload_v2``
three-step dance, error handling) rather than mock objects standing in for it.  So this
module runs an actual HTTP server on ``127.0.0.1`` (port chosen by the OS) that answers
the Web API methods xenbot uses with the shapes Slack returns, records every request for
assertions, and can inject the faults production will meet (HTTP 429 with
``Retry-After``, 5xx, ``invalid_auth``, slow answers, dropped connections).

It also serves the two non-API endpoints the app talks to:

* the upload URL handed out by ``files.getUploadURLExternal`` (``/upload/<file_id>``),
* ``response_url`` webhooks (``/response/<id>``), minted by :meth:`FakeSlack.response_url`.

``apps.connections.open`` answers with a ``ws://`` URL of an attached
:class:`tests.slack.fake_socket_mode.FakeSocketMode`, so Bolt's ``SocketModeHandler`` can
be driven end to end.

Usage without pytest::

    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.base_url)
        client.chat_postMessage(channel="C123", text="hi")
        assert fake.last("chat.postMessage").args["text"] == "hi"

With pytest, use the ``fake_slack`` fixture from :mod:`tests.slack.fixtures`.

Realism notes (what the fake checks, so tests fail the way production would):

* tokens: ``Authorization: Bearer`` header or a ``token`` body field; missing ->
  ``not_authed``; ``xapp-`` tokens only for ``apps.connections.open`` (and only they
  are accepted there) -> ``not_allowed_token_type``; anything not ``xoxb-``/``xoxp-`` ->
  ``invalid_auth``; optionally only an explicit set of tokens is valid.
* ``chat.postMessage``/``chat.update``/``chat.postEphemeral`` validate Block Kit limits
  (50 blocks, section text 3,000, 10 fields of 2,000, 25 elements per actions block,
  ids 255, button text 75 / value 2,000, header 150) -> ``invalid_blocks`` with an
  ``errors`` list, ``msg_blocks_too_long`` past a total block-text budget, ``no_text``
  when there is nothing to post.
* ``chat.update``/``chat.delete`` only know messages posted through the fake
  (``message_not_found`` otherwise); ephemeral messages cannot be updated that way.
* a ``response_url`` accepts 5 posts, then answers 404 ``used_url``.
* ``views.open``/``views.update``/``views.publish`` keep the views (``fake.views``) and
  answer as Slack does (:mod:`tests.slack.fake_views`).

Error strings marked "fake-specific" below are the fake's choice where Slack's exact
answer is not documented; assert on behaviour, not on those strings.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
import urllib.parse
import zoneinfo
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, TypedDict

from tests.slack.fake_views import FakeViews

__all__ = [
    "RESPONSE_URL_METHOD",
    "UPLOAD_METHOD",
    "FakeSlack",
    "PostedMessage",
    "RecordedCall",
    "SocketModeEndpoint",
    "UploadedFile",
]

logger = logging.getLogger(__name__)

#: Pseudo method name under which posts to a ``response_url`` are recorded.
RESPONSE_URL_METHOD = "response_url"
#: Pseudo method name under which the file bytes POSTed to an upload URL are recorded.
UPLOAD_METHOD = "upload"

_BOT_TOKEN_PREFIXES = ("xoxb-", "xoxp-")
_APP_TOKEN_PREFIX = "xapp-"
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


class SocketModeEndpoint(Protocol):
    """What ``apps.connections.open`` needs from a Socket Mode server: a fresh URL."""

    def new_connection_url(self) -> str:
        """Return a ``ws://`` URL for one new WebSocket connection."""
        ...


@dataclass
class RecordedCall:
    """One HTTP request received by the fake, and how it was answered.

    ``method`` is the Web API method (``"chat.postMessage"``) or one of the pseudo
    methods :data:`UPLOAD_METHOD` / :data:`RESPONSE_URL_METHOD`.  ``headers`` has
    lower-cased names.  ``body`` is the parsed body: the JSON object, or the form fields
    (single values as ``str``); ``query`` the parsed query string.  ``args`` merges both,
    which is what the Web API method sees whatever encoding the client chose.
    ``status`` is ``None`` until answered and ``0`` when the connection was dropped on
    purpose.
    """

    seq: int
    method: str
    http_method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    raw_body: bytes
    time: float
    status: int | None = None
    response: Any = None

    @property
    def args(self) -> dict[str, Any]:
        """Query-string and body arguments merged (body wins)."""
        return {**self.query, **self.body}

    @property
    def token(self) -> str | None:
        """The token the client sent, from ``Authorization: Bearer`` or a ``token`` field."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        token = self.args.get("token")
        return str(token) if token else None

    @property
    def ok(self) -> bool:
        """True when answered HTTP 200 with ``"ok": true``."""
        return self.status == 200 and isinstance(self.response, dict) and self.response.get("ok") is True

    def arg_json(self, name: str) -> Any:
        """An argument that may arrive JSON-encoded inside a form (``blocks``, ``files``, …)."""
        value = self.args.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def describe(self) -> str:
        """One line for failure listings."""
        interesting = ("channel", "user", "ts", "text", "usergroup", "filename", "response_type")
        parts = []
        for key in interesting:
            if key in self.args:
                value = str(self.args[key])
                parts.append(f"{key}={value[:60]!r}")
        outcome = "pending" if self.status is None else str(self.status)
        if isinstance(self.response, dict) and "ok" in self.response:
            outcome += " ok" if self.response.get("ok") else f" error={self.response.get('error')}"
        return f"#{self.seq} {self.method} {' '.join(parts)} -> {outcome}".replace("  ", " ")


class PostedMessage(TypedDict):
    """A message the app made visible in Slack, normalised across the ways to post one.

    ``kind`` is ``message`` (chat.postMessage), ``ephemeral`` (chat.postEphemeral),
    ``update`` (chat.update) or ``response_url``.  ``response_type`` is only set for
    ``response_url`` posts and is what the app sent (``None`` means Slack's default,
    ephemeral).  ``user`` is the recipient of an ephemeral message.
    """

    kind: Literal["message", "ephemeral", "update", "response_url"]
    seq: int
    channel: str | None
    ts: str | None
    text: str | None
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    thread_ts: str | None
    response_type: str | None
    replace_original: bool | None
    delete_original: bool | None
    user: str | None


@dataclass
class UploadedFile:
    """A file going through ``files.getUploadURLExternal`` -> upload -> ``completeUploadExternal``."""

    file_id: str
    filename: str
    length: int
    alt_txt: str | None = None
    snippet_type: str | None = None
    content: bytes | None = None
    title: str | None = None
    channel_id: str | None = None
    initial_comment: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass
class _Fault:
    status: int = 200
    error: str | None = None
    retry_after: int | None = None
    delay: float = 0.0
    drop: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    remaining: int = 1


@dataclass
class _ResponseUrl:
    channel_id: str | None
    user_id: str | None
    created: float
    uses: int = 0


@dataclass
class _Answer:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    raw: bytes | None = None
    content_type: str = "application/json; charset=utf-8"


def _ok(**fields: Any) -> _Answer:
    return _Answer(200, {"ok": True, **fields})


def _err(error: str, status: int = 200, **fields: Any) -> _Answer:
    return _Answer(status, {"ok": False, "error": error, **fields})


def _as_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes")


def _as_list(value: Any) -> list[Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return None
        return decoded if isinstance(decoded, list) else None
    return value if isinstance(value, list) else None


class FakeSlack:
    """Threaded fake of the Slack Web API on ``127.0.0.1:<random port>``.

    Start/stop with :meth:`start`/:meth:`stop` or use it as a context manager.  Point a
    client at it with ``WebClient(token="xoxb-…", base_url=fake.base_url)``.

    All state is guarded by one condition variable, so the query helpers are safe to
    call from the test thread while the app's threads are calling the API.
    """

    #: Default total length of all ``text`` strings in a message's blocks before
    #: ``msg_blocks_too_long`` (Slack's limit is not documented precisely; ~12k per
    #: slack-facts.md).  ``None`` disables the check.
    BLOCKS_TEXT_BUDGET: ClassVar[int] = 12_000
    RESPONSE_URL_MAX_USES: ClassVar[int] = 5
    RESPONSE_URL_TTL_SECONDS: ClassVar[float] = 30 * 60

    def __init__(
        self,
        *,
        team_id: str = "T123",
        team_domain: str = "xenbot-test",
        team_name: str = "xenbot test",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        bot_name: str = "xenbot",
        app_id: str = "A0XENBOT",
        tokens: Collection[str] | None = None,
        strict_channels: bool = False,
        blocks_text_budget: int | None = BLOCKS_TEXT_BUDGET,
        host: str = "127.0.0.1",
    ) -> None:
        """Configure the workspace the fake pretends to be.

        ``tokens``: if given, only these tokens are valid (others get ``invalid_auth``);
        by default any ``xoxb-``/``xoxp-`` token is accepted, and ``xapp-`` tokens for
        ``apps.connections.open``.  ``strict_channels``: refuse to post to channels not
        registered with :meth:`add_channel` (``channel_not_found``), instead of accepting
        any channel id.
        """
        self.team_id = team_id
        self.team_domain = team_domain
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.tokens: set[str] | None = set(tokens) if tokens is not None else None
        self.strict_channels = strict_channels
        self.blocks_text_budget = blocks_text_budget
        self._host = host

        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

        self._socket_mode: SocketModeEndpoint | None = None
        self._revoked: set[str] = set()
        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}

        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._ts_micros = itertools.count(1_700_000_000_000_100, 100)
        self._calls: list[RecordedCall] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._rate_limited: dict[str, float] = {}  # method -> monotonic time its 429s end
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._files: dict[str, UploadedFile] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self.views = FakeViews(team_id, app_id, bot_id, _block_errors)

        self.add_user(bot_user_id, name=bot_name, real_name=bot_name, is_bot=True, tz="UTC")
        self.add_user("U123", name="alice", real_name="Alice Operator", tz="Europe/London")
        self.add_channel("C123", "xen-ops")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind ``host:0`` and serve in a daemon thread.  Idempotent."""
        if self._server is not None:
            return self
        server = _Server((self._host, 0), _Handler)
        server.fake = self
        self._stopping.clear()
        self._server = server
        # A short poll interval keeps stop() (and so fixture teardown) fast.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlack", daemon=True
        )
        self._thread.start()
        logger.debug("FakeSlack listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving; pending delayed answers are cut short.  Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the server is bound to (only while started)."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Web API base URL for ``WebClient(base_url=...)``.

        It ends with ``/api/``: slack_sdk joins method names with ``urljoin``, so without
        the trailing slash the ``api`` segment would be replaced.
        """
        return f"{self.url}/api/"

    # ------------------------------------------------------------------ configuration

    def attach_socket_mode(self, endpoint: SocketModeEndpoint | None) -> None:
        """Make ``apps.connections.open`` hand out URLs of this Socket Mode server."""
        with self._cond:
            self._socket_mode = endpoint

    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        real_name: str | None = None,
        tz: str = "UTC",
        is_bot: bool = False,
        is_admin: bool = False,
        deleted: bool = False,
        email: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a user for ``users.info``; returns the user object as Slack shapes it.

        ``tz`` is an IANA zone name; ``tz_offset`` (seconds east of UTC, now) and
        ``tz_label`` are derived from it like Slack does.  ``extra`` keys are merged in.
        """
        real = real_name if real_name is not None else name
        offset, label = _tz_info(tz)
        profile: dict[str, Any] = {
            "real_name": real,
            "real_name_normalized": real,
            "display_name": name,
            "display_name_normalized": name,
            "team": self.team_id,
        }
        if email is not None:
            profile["email"] = email
        if is_bot:
            profile["bot_id"] = self.bot_id if user_id == self.bot_user_id else f"B{user_id[1:]}"
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": deleted,
            "color": "9f69e7",
            "real_name": real,
            "tz": tz,
            "tz_label": label,
            "tz_offset": offset,
            "profile": profile,
            "is_admin": is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1700000000,
            **extra,
        }
        with self._cond:
            self._users[user_id] = user
        return user

    def add_usergroup(self, usergroup_id: str, user_ids: Collection[str], *, handle: str | None = None) -> None:
        """Register a user group (``S…``) and its members for ``usergroups.users.list``."""
        with self._cond:
            self._usergroups[usergroup_id] = {
                "id": usergroup_id,
                "handle": handle or usergroup_id.lower(),
                "users": list(user_ids),
            }

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_private: bool = False,
        is_member: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a channel for ``conversations.info``.

        ``is_member=False`` makes ``chat.postMessage`` to it fail with ``not_in_channel``
        (a bot must be invited before it can post).
        """
        channel: dict[str, Any] = {
            "id": channel_id,
            "name": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "created": 1700000000,
            "is_archived": False,
            "is_general": False,
            "unlinked": 0,
            "name_normalized": name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "context_team_id": self.team_id,
            "creator": "U123",
            "is_member": is_member,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            **extra,
        }
        with self._cond:
            self._channels[channel_id] = channel
        return channel

    def revoke_token(self, token: str) -> None:
        """Make further calls with ``token`` fail with ``token_revoked``."""
        with self._cond:
            self._revoked.add(token)

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        retry_after: int | None = 1,
        count: int = 1,
        error: str | None = None,
        delay: float = 0.0,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer the next ``count`` calls to ``method`` (``"*"``: any) with a failure.

        * ``status=429``: ``Retry-After: <retry_after>`` header and
          ``{"ok": false, "error": "ratelimited"}``, as Slack rate limits.  slack_sdk's
          ``RateLimitErrorRetryHandler`` sleeps ``Retry-After`` + up to 1 s of jitter,
          so tests use ``retry_after=0``.
        * ``status>=500``: ``{"ok": false, "error": "fatal_error"}`` (or ``error``).
        * ``status=200`` with ``error``: a normal Slack error, e.g. ``invalid_auth``.
        * ``delay``: wait that long before answering (combine with a client timeout to
          test timeouts).  ``extra`` fields are merged into the error body.
        """
        if error is None:
            error = "ratelimited" if status == 429 else "fatal_error" if status >= 500 else "invalid_auth"
        fault = _Fault(
            status=status,
            error=error,
            retry_after=retry_after if status == 429 else None,
            delay=delay,
            extra=dict(extra or {}),
            remaining=count,
        )
        self._add_fault(method, fault)

    def error_next(self, method: str, error: str, *, count: int = 1, **extra: Any) -> None:
        """Answer the next ``count`` calls with HTTP 200 ``{"ok": false, "error": error}``."""
        self._add_fault(method, _Fault(status=200, error=error, extra=dict(extra), remaining=count))

    def delay_next(self, method: str, seconds: float, *, count: int = 1) -> None:
        """Answer the next ``count`` calls normally, but only after ``seconds``."""
        self._add_fault(method, _Fault(delay=seconds, remaining=count))

    def drop_next(self, method: str, *, count: int = 1) -> None:
        """Close the connection without answering the next ``count`` calls.

        The client sees ``RemoteDisconnected``, which slack_sdk's default
        ``ConnectionErrorRetryHandler`` retries once.
        """
        self._add_fault(method, _Fault(drop=True, remaining=count))

    def rate_limit(self, method: str, seconds: float) -> None:
        """Answer every call to ``method`` with HTTP 429 for the next ``seconds``, as Slack does
        while a method's rate limit is exceeded: ``{"ok": false, "error": "ratelimited"}`` and a
        ``Retry-After`` header giving the whole seconds until calls are accepted again (at least 1).
        The calls are recorded (``status`` 429) like any other."""
        with self._cond:
            self._rate_limited[method] = time.monotonic() + seconds

    def clear_faults(self) -> None:
        """Forget all pending injected faults."""
        with self._cond:
            self._faults.clear()
            self._rate_limited.clear()

    def _add_fault(self, method: str, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("count must be >= 1")
        with self._cond:
            self._faults.setdefault(method, []).append(fault)

    def _take_fault(self, method: str) -> _Fault | None:
        with self._cond:
            until = self._rate_limited.get(method)
            if until is not None:
                left = until - time.monotonic()
                if left > 0:
                    return _Fault(status=429, error="ratelimited", retry_after=max(1, math.ceil(left)))
                del self._rate_limited[method]
            for key in (method, "*"):
                queue = self._faults.get(key)
                if queue:
                    fault = queue[0]
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        queue.pop(0)
                    return replace(fault)
        return None

    # ------------------------------------------------------------------ queries

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """All recorded calls in arrival order, optionally only those to ``method``."""
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def last(self, method: str) -> RecordedCall:
        """The most recent call to ``method``; AssertionError listing all calls if none."""
        with self._cond:
            for call in reversed(self._calls):
                if call.method == method:
                    return call
            raise AssertionError(f"no call to {method} was recorded.\n{self._listing()}")

    def wait_for(
        self,
        method: str | None,
        count: int = 1,
        timeout: float = 5.0,
        predicate: Callable[[RecordedCall], bool] | None = None,
    ) -> list[RecordedCall]:
        """Block until at least ``count`` answered calls to ``method`` match ``predicate``.

        Returns all matching calls (answered ones only, so ``status``/``response`` are
        set).  Raises AssertionError after ``timeout`` seconds with a listing of every
        call seen, which is usually enough to tell what the app did instead.  Use it for
        anything the app does from a background thread (lazy listeners, workers).
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [
                    c
                    for c in self._calls
                    if c.status is not None
                    and (method is None or c.method == method)
                    and (predicate is None or predicate(c))
                ]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = method or "any method"
                    cond = " matching the predicate" if predicate is not None else ""
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s waiting for {count} call(s) to {what}{cond}; "
                        f"{len(matches)} matched.\n{self._listing()}"
                    )
                self._cond.wait(remaining)

    def posted_messages(self) -> list[PostedMessage]:
        """Everything the app showed users, in order: posts, ephemerals, updates and
        ``response_url`` posts that Slack accepted (failed attempts are left out, so an
        injected 429 followed by a successful retry counts once)."""
        result: list[PostedMessage] = []
        kinds: dict[str, Literal["message", "ephemeral", "update", "response_url"]] = {
            "chat.postMessage": "message",
            "chat.postEphemeral": "ephemeral",
            "chat.update": "update",
            RESPONSE_URL_METHOD: "response_url",
        }
        for call in self.calls():
            kind = kinds.get(call.method)
            if kind is None or not call.ok:
                continue
            args = call.args
            response = call.response if isinstance(call.response, dict) else {}
            channel = response.get("channel", args.get("channel"))
            ts = response.get("ts") or response.get("message_ts")
            if kind == "response_url":
                with self._cond:
                    entry = self._response_urls.get(call.path.rsplit("/", 1)[-1])
                channel = entry.channel_id if entry is not None else None
                ts = None
            result.append(
                PostedMessage(
                    kind=kind,
                    seq=call.seq,
                    channel=None if channel is None else str(channel),
                    ts=None if ts is None else str(ts),
                    text=None if args.get("text") is None else str(args.get("text")),
                    blocks=_as_list(args.get("blocks")),
                    attachments=_as_list(args.get("attachments")),
                    thread_ts=None if args.get("thread_ts") in (None, "") else str(args.get("thread_ts")),
                    response_type=str(args["response_type"])
                    if kind == "response_url" and "response_type" in args
                    else None,
                    replace_original=_as_bool(args.get("replace_original")),
                    delete_original=_as_bool(args.get("delete_original")),
                    user=str(args["user"]) if kind == "ephemeral" and "user" in args else None,
                )
            )
        return result

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """Current state of a message posted through the fake (after updates), or None
        if unknown or deleted."""
        with self._cond:
            found = self._messages.get((channel, ts))
            return json.loads(json.dumps(found)) if found is not None else None

    def uploads(self) -> list[UploadedFile]:
        """Files whose upload URL was requested, in order (``content`` once uploaded,
        ``completed`` after ``files.completeUploadExternal``)."""
        with self._cond:
            return [replace(f) for f in self._files.values()]

    def response_url(self, *, channel_id: str | None = "C123", user_id: str | None = "U123") -> str:
        """Mint a fresh ``response_url`` served by the fake, for a command/action body.

        ``channel_id``/``user_id`` describe where Slack would show the response; they are
        reported back in :meth:`posted_messages`.
        """
        with self._cond:
            rid = f"{next(self._ids):06d}"
            self._response_urls[rid] = _ResponseUrl(channel_id, user_id, time.monotonic())
        return f"{self.url}/response/{rid}"

    def reset(self) -> None:
        """Forget calls, faults, messages, uploads and response URLs; keep the
        configuration (users, groups, channels, tokens, Socket Mode endpoint)."""
        with self._cond:
            self._calls.clear()
            self._faults.clear()
            self._rate_limited.clear()
            self._messages.clear()
            self._files.clear()
            self._response_urls.clear()
            self.views.reset()
            self._cond.notify_all()

    def _listing(self) -> str:
        if not self._calls:
            return "No calls were recorded."
        lines = [f"Calls seen ({len(self._calls)}):"]
        lines.extend("  " + c.describe() for c in self._calls)
        return "\n".join(lines)

    # ------------------------------------------------------------------ request handling

    def _record(self, call: RecordedCall) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _answered(self, call: RecordedCall, answer: _Answer) -> None:
        with self._cond:
            call.status = 0 if answer.drop else answer.status
            call.response = answer.payload
            self._cond.notify_all()

    def _handle(self, handler: _Handler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        path = parsed.path
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
        body = _parse_body(raw, headers.get("content-type", ""))

        if path.startswith("/api/"):
            method = path[len("/api/") :]
        elif path.startswith("/upload/"):
            method = UPLOAD_METHOD
        elif path.startswith("/response/"):
            method = RESPONSE_URL_METHOD
        else:
            handler.send_answer(_Answer(404, None, raw=b"Not Found", content_type="text/plain"))
            return

        call = RecordedCall(
            seq=next(self._seq),
            method=method,
            http_method=handler.command,
            path=path,
            headers=headers,
            query=query,
            body=body,
            raw_body=raw,
            time=time.time(),
        )
        self._record(call)
        logger.debug("FakeSlack <- %s %s", handler.command, path)

        answer = self._answer(call, path)
        self._answered(call, answer)
        handler.send_answer(answer)

    def _answer(self, call: RecordedCall, path: str) -> _Answer:
        fault = self._take_fault(call.method)
        if fault is not None:
            if fault.delay > 0:
                self._stopping.wait(fault.delay)
            if fault.drop:
                return _Answer(0, None, drop=True)
            if fault.error is not None:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return _Answer(fault.status, {"ok": False, "error": fault.error, **fault.extra}, headers=headers)
        try:
            if call.method == UPLOAD_METHOD:
                return self._upload(call, path[len("/upload/") :])
            if call.method == RESPONSE_URL_METHOD:
                return self._response_post(call, path[len("/response/") :])
            return self._api(call)
        except Exception as exc:  # a bug in the fake must not hang the client
            logger.exception("FakeSlack failed answering %s", call.method)
            return _err("fatal_error", 500, detail=repr(exc))

    def _api(self, call: RecordedCall) -> _Answer:
        handler = _API_METHODS.get(call.method)
        if handler is None:
            if call.method == "files.upload":
                return _err("method_deprecated")
            return _err("unknown_method")
        denied = None if call.method == "api.test" else self._check_token(call)
        if denied is not None:
            return denied
        return handler(self, call.args)

    def _check_token(self, call: RecordedCall) -> _Answer | None:
        token = call.token
        if not token:
            return _err("not_authed")
        with self._cond:
            if token in self._revoked:
                return _err("token_revoked")
            if self.tokens is not None and token not in self.tokens:
                return _err("invalid_auth")
        if call.method in _APP_TOKEN_METHODS:
            if not token.startswith(_APP_TOKEN_PREFIX):
                return _err("not_allowed_token_type")
            return None
        if token.startswith(_APP_TOKEN_PREFIX):
            return _err("not_allowed_token_type")
        if not token.startswith(_BOT_TOKEN_PREFIXES):
            return _err("invalid_auth")
        return None

    # ------------------------------------------------------------------ Web API methods

    def _next_ts(self) -> str:
        micros = next(self._ts_micros)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _bot_profile(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "deleted": False,
            "name": self.bot_name,
            "updated": 1700000000,
            "app_id": self.app_id,
            "icons": {"image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png"},
            "team_id": self.team_id,
        }

    def _resolve_channel(self, channel: Any) -> tuple[str | None, _Answer | None]:
        if not channel:
            return None, _err("channel_not_found")
        channel = str(channel)
        if channel[:1] in ("U", "W"):
            # Posting to a user id opens (or reuses) the DM with them.
            return "D" + channel[1:], None
        with self._cond:
            known = self._channels.get(channel)
        if known is None:
            if self.strict_channels:
                return None, _err("channel_not_found")
            return channel, None
        if not known.get("is_member", True):
            return None, _err("not_in_channel")
        return channel, None

    def _check_content(self, args: Mapping[str, Any], *, require: bool = True) -> _Answer | None:
        blocks_raw = args.get("blocks")
        blocks = _as_list(blocks_raw)
        if blocks_raw not in (None, "") and blocks is None:
            return _err("invalid_blocks_format")
        if blocks is not None:
            errors = _block_errors(blocks)
            if errors:
                return _err(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )
            if self.blocks_text_budget is not None and _text_size(blocks) > self.blocks_text_budget:
                return _err("msg_blocks_too_long")
        text = args.get("text")
        if text is not None and len(str(text)) > 40_000:
            return _err("msg_too_long")
        if require and not text and not blocks and not _as_list(args.get("attachments")):
            return _err("no_text")
        return None

    def _message_body(self, args: Mapping[str, Any], ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": str(args.get("text") or ""),
            "team": self.team_id,
            "bot_profile": self._bot_profile(),
        }
        blocks = _as_list(args.get("blocks"))
        if blocks is not None:
            message["blocks"] = blocks
        attachments = _as_list(args.get("attachments"))
        if attachments is not None:
            message["attachments"] = [{"id": i + 1, **a} for i, a in enumerate(attachments)]
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
            message["parent_user_id"] = self.bot_user_id
        return message

    def _m_api_test(self, args: dict[str, Any]) -> _Answer:
        return _ok(args={k: v for k, v in args.items() if k != "token"})

    def _m_auth_test(self, args: dict[str, Any]) -> _Answer:
        return _ok(
            url=f"https://{self.team_domain}.slack.com/",
            team=self.team_name,
            user=self.bot_name,
            team_id=self.team_id,
            user_id=self.bot_user_id,
            bot_id=self.bot_id,
            is_enterprise_install=False,
        )

    def _m_chat_post_message(self, args: dict[str, Any]) -> _Answer:
        channel, problem = self._resolve_channel(args.get("channel"))
        if problem is not None or channel is None:
            return problem or _err("channel_not_found")
        problem = self._check_content(args)
        if problem is not None:
            return problem
        with self._cond:
            ts = self._next_ts()
            message = self._message_body(args, ts)
            self._messages[(channel, ts)] = message
        return _ok(channel=channel, ts=ts, message=message)

    def _m_chat_post_ephemeral(self, args: dict[str, Any]) -> _Answer:
        if not args.get("user"):
            return _err("user_not_found")
        channel, problem = self._resolve_channel(args.get("channel"))
        if problem is not None or channel is None:
            return problem or _err("channel_not_found")
        problem = self._check_content(args)
        if problem is not None:
            return problem
        with self._cond:
            if str(args["user"]) not in self._users:
                return _err("user_not_found")
            ts = self._next_ts()
        return _ok(message_ts=ts)

    def _m_chat_update(self, args: dict[str, Any]) -> _Answer:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if not channel:
            return _err("channel_not_found")
        problem = self._check_content(args, require=False)
        if problem is not None:
            return problem
        with self._cond:
            message = self._messages.get((channel, ts))
            if message is None:
                return _err("message_not_found")
            if "text" in args:
                message["text"] = str(args["text"] or "")
            for key in ("blocks", "attachments"):
                if key in args:
                    value = _as_list(args[key])
                    if value:
                        message[key] = value
                    else:
                        message.pop(key, None)
            message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
            snapshot = json.loads(json.dumps(message))
        return _ok(channel=channel, ts=ts, text=snapshot.get("text", ""), message=snapshot)

    def _m_chat_delete(self, args: dict[str, Any]) -> _Answer:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        with self._cond:
            if self._messages.pop((channel, ts), None) is None:
                return _err("message_not_found")
        return _ok(channel=channel, ts=ts)

    def _m_users_info(self, args: dict[str, Any]) -> _Answer:
        with self._cond:
            user = self._users.get(str(args.get("user") or ""))
            if user is None:
                return _err("user_not_found")
            return _ok(user=json.loads(json.dumps(user)))

    def _m_bots_info(self, args: dict[str, Any]) -> _Answer:
        # https://api.slack.com/methods/bots.info: the app behind a bot id (xenbot learns its api_app_id here).
        if str(args.get("bot") or "") != self.bot_id:
            return _err("bot_not_found")
        return _ok(bot={"id": self.bot_id, "deleted": False, "name": self.bot_name, "updated": 1700000000,
                        "app_id": self.app_id, "user_id": self.bot_user_id, "icons": {}})

    def _m_usergroups_users_list(self, args: dict[str, Any]) -> _Answer:
        with self._cond:
            group = self._usergroups.get(str(args.get("usergroup") or ""))
            if group is None:
                return _err("no_such_subteam")
            return _ok(users=list(group["users"]))

    def _m_conversations_info(self, args: dict[str, Any]) -> _Answer:
        channel_id = str(args.get("channel") or "")
        with self._cond:
            channel = self._channels.get(channel_id)
            if channel is None:
                if channel_id.startswith("D"):
                    return _ok(
                        channel={
                            "id": channel_id,
                            "created": 1700000000,
                            "is_im": True,
                            "is_org_shared": False,
                            "user": "U" + channel_id[1:],
                            "is_user_deleted": False,
                            "priority": 0,
                        }
                    )
                return _err("channel_not_found")
            return _ok(channel=json.loads(json.dumps(channel)))

    def _m_conversations_open(self, args: dict[str, Any]) -> _Answer:
        """Open (or find) a DM with one user, as docs.slack.dev/reference/methods/conversations.open
        describes: ``users`` (1 to 8 ids; the caller is implied) or ``channel`` to resume one;
        the answer is just the id unless ``return_im``. Only 1:1 DMs are modelled; their id is
        ``D`` + the user id's tail, the same one ``chat.postMessage`` to a user id uses."""
        if args.get("channel"):
            channel_id = str(args["channel"])
            if not channel_id.startswith("D"):
                return _err("method_not_supported_for_channel_type")
            return _ok(channel={"id": channel_id})
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            return _err("users_list_not_supplied")
        if len(users) > 8:
            return _err("too_many_users")
        if len(users) > 1:
            return _err("method_not_supported_for_channel_type")  # fake-specific: no group DMs
        with self._cond:
            user = self._users.get(users[0])
        if user is None:
            return _err("user_not_found")
        if user.get("deleted"):
            return _err("user_disabled")
        channel_id = "D" + users[0][1:]
        if _as_bool(args.get("return_im")):
            channel = {"id": channel_id, "created": 1700000000, "is_im": True, "is_org_shared": False,
                       "user": users[0], "is_user_deleted": False, "priority": 0}
            return _ok(no_op=True, already_open=True, channel=channel)
        return _ok(channel={"id": channel_id})

    def _m_files_get_upload_url_external(self, args: dict[str, Any]) -> _Answer:
        filename = args.get("filename")
        try:
            length = int(args.get("length", ""))
        except (TypeError, ValueError):
            return _err("invalid_arguments")
        if not filename or length < 0:
            return _err("invalid_arguments")
        with self._cond:
            file_id = f"F{next(self._ids):010d}"
            self._files[file_id] = UploadedFile(
                file_id=file_id,
                filename=str(filename),
                length=length,
                alt_txt=args.get("alt_txt"),
                snippet_type=args.get("snippet_type"),
            )
        return _ok(upload_url=f"{self.url}/upload/{file_id}", file_id=file_id)

    def _m_files_complete_upload_external(self, args: dict[str, Any]) -> _Answer:
        raw_files = args.get("files")
        files = _as_list(raw_files)
        if not files:
            return _err("invalid_arguments")
        channel_id = args.get("channel_id") or None
        if channel_id is None and args.get("channels"):
            channel_id = str(args["channels"]).split(",")[0]
        result = []
        with self._cond:
            for entry in files:
                upload = self._files.get(str(entry.get("id")))
                if upload is None or upload.content is None:
                    return _err("file_not_found")  # fake-specific for "never uploaded"
            now = int(time.time())
            for entry in files:
                upload = self._files[str(entry["id"])]
                upload.title = str(entry.get("title") or upload.filename)
                upload.channel_id = None if channel_id is None else str(channel_id)
                upload.initial_comment = args.get("initial_comment")
                upload.thread_ts = args.get("thread_ts")
                upload.completed = True
                result.append(
                    {
                        "id": upload.file_id,
                        "created": now,
                        "timestamp": now,
                        "name": upload.filename,
                        "title": upload.title,
                        "mimetype": "text/plain",
                        "filetype": "text",
                        "pretty_type": "Plain Text",
                        "user": self.bot_user_id,
                        "user_team": self.team_id,
                        "size": len(upload.content or b""),
                        "is_external": False,
                        "is_public": upload.channel_id is not None,
                        "url_private": f"https://files.slack.com/files-pri/{self.team_id}-{upload.file_id}/{upload.filename}",
                        "permalink": f"https://{self.team_domain}.slack.com/files/{self.bot_user_id}/{upload.file_id}/{upload.filename}",
                    }
                )
        return _ok(files=result)

    def _m_views_open(self, args: dict[str, Any]) -> _Answer:
        return _Answer(200, self.views.open(args))

    def _m_views_update(self, args: dict[str, Any]) -> _Answer:
        return _Answer(200, self.views.update(args))

    def _m_views_publish(self, args: dict[str, Any]) -> _Answer:
        return _Answer(200, self.views.publish(args))

    def _m_apps_connections_open(self, args: dict[str, Any]) -> _Answer:
        with self._cond:
            endpoint = self._socket_mode
        if endpoint is None:
            return _err("socket_mode_not_enabled")  # fake-specific
        return _ok(url=endpoint.new_connection_url())

    # ------------------------------------------------------------------ non-API endpoints

    def _upload(self, call: RecordedCall, file_id: str) -> _Answer:
        with self._cond:
            upload = self._files.get(file_id)
            if upload is None:
                return _Answer(404, None, raw=b"Not Found", content_type="text/plain")
            upload.content = call.raw_body
        return _Answer(200, None, raw=f"OK - {len(call.raw_body)}".encode(), content_type="text/plain")

    def _response_post(self, call: RecordedCall, rid: str) -> _Answer:
        with self._cond:
            entry = self._response_urls.get(rid)
            if entry is None:
                return _err("no_such_url", 404)  # fake-specific
            if time.monotonic() - entry.created > self.RESPONSE_URL_TTL_SECONDS:
                return _err("expired_url", 404)
            if entry.uses >= self.RESPONSE_URL_MAX_USES:
                return _err("used_url", 404)
            entry.uses += 1
        if not call.body:
            return _err("invalid_payload", 400)  # fake-specific
        return _ok()


_API_METHODS: dict[str, Callable[[FakeSlack, dict[str, Any]], _Answer]] = {
    "api.test": FakeSlack._m_api_test,
    "auth.test": FakeSlack._m_auth_test,
    "chat.postMessage": FakeSlack._m_chat_post_message,
    "chat.postEphemeral": FakeSlack._m_chat_post_ephemeral,
    "chat.update": FakeSlack._m_chat_update,
    "chat.delete": FakeSlack._m_chat_delete,
    "users.info": FakeSlack._m_users_info,
    "bots.info": FakeSlack._m_bots_info,
    "usergroups.users.list": FakeSlack._m_usergroups_users_list,
    "conversations.info": FakeSlack._m_conversations_info,
    "conversations.open": FakeSlack._m_conversations_open,
    "files.getUploadURLExternal": FakeSlack._m_files_get_upload_url_external,
    "files.completeUploadExternal": FakeSlack._m_files_complete_upload_external,
    "apps.connections.open": FakeSlack._m_apps_connections_open,
    "views.open": FakeSlack._m_views_open,
    "views.update": FakeSlack._m_views_update,
    "views.publish": FakeSlack._m_views_publish,
}


# ---------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeSlack

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (timeouts, dropped faults) make writes fail; that is
        # expected in fault tests and must not spray tracebacks over the test output.
        logger.debug("FakeSlack: error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        # AsyncWebClient sends GET with a query string for read methods.
        self.server.fake._handle(self)

    def send_answer(self, answer: _Answer) -> None:
        self.close_connection = True
        if answer.drop:
            return
        data = answer.raw if answer.raw is not None else json.dumps(answer.payload).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("FakeSlack %s", format % args)


# ---------------------------------------------------------------------- helpers


def _parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    if not raw:
        return {}
    ctype = content_type.split(";")[0].strip().lower()
    text = raw.decode("utf-8", errors="replace")
    if ctype == "application/json":
        try:
            decoded = json.loads(text)
        except ValueError:
            return {}
        return decoded if isinstance(decoded, dict) else {"_json": decoded}
    if ctype == "application/x-www-form-urlencoded":
        return {k: v[-1] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}
    return {}


def _tz_info(tz: str) -> tuple[int, str]:
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return 0, tz
    now = datetime.now(zone)
    offset = now.utcoffset()
    return (int(offset.total_seconds()) if offset is not None else 0), (now.tzname() or tz)


def _text_size(value: Any) -> int:
    """Total length of every ``text`` string in a block structure."""
    if isinstance(value, dict):
        size = 0
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                size += len(item)
            else:
                size += _text_size(item)
        return size
    if isinstance(value, list):
        return sum(_text_size(v) for v in value)
    return 0


def _iter_block_errors(blocks: list[Any]) -> Iterator[str]:
    def too_long(limit: int, pointer: str) -> str:
        return f"must be less than {limit + 1} characters [json-pointer:{pointer}]"

    if len(blocks) > 50:
        yield "no more than 50 items allowed [json-pointer:/blocks]"
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        if not isinstance(block, dict) or "type" not in block:
            yield f"missing required field: type [json-pointer:{where}]"
            continue
        if len(str(block.get("block_id", ""))) > 255:
            yield too_long(255, f"{where}/block_id")
        kind = block["type"]
        text = block.get("text")
        if kind == "section":
            fields = block.get("fields")
            if text is None and not fields:
                yield f"must provide text or fields [json-pointer:{where}]"
            if isinstance(text, dict) and len(str(text.get("text", ""))) > 3000:
                yield too_long(3000, f"{where}/text/text")
            if isinstance(fields, list):
                if len(fields) > 10:
                    yield f"no more than 10 items allowed [json-pointer:{where}/fields]"
                for j, item in enumerate(fields):
                    if isinstance(item, dict) and len(str(item.get("text", ""))) > 2000:
                        yield too_long(2000, f"{where}/fields/{j}/text")
        elif kind == "header":
            if isinstance(text, dict) and len(str(text.get("text", ""))) > 150:
                yield too_long(150, f"{where}/text/text")
        elif kind == "context":
            elements = block.get("elements") or []
            if len(elements) > 10:
                yield f"no more than 10 items allowed [json-pointer:{where}/elements]"
        elif kind == "actions":
            elements = block.get("elements") or []
            if len(elements) > 25:
                yield f"no more than 25 items allowed [json-pointer:{where}/elements]"
            for j, element in enumerate(elements):
                if not isinstance(element, dict):
                    continue
                at = f"{where}/elements/{j}"
                if len(str(element.get("action_id", ""))) > 255:
                    yield too_long(255, f"{at}/action_id")
                if element.get("type") == "button":
                    label = element.get("text")
                    if isinstance(label, dict) and len(str(label.get("text", ""))) > 75:
                        yield too_long(75, f"{at}/text/text")
                    if len(str(element.get("value", ""))) > 2000:
                        yield too_long(2000, f"{at}/value")
                    if len(str(element.get("url", ""))) > 3000:
                        yield too_long(3000, f"{at}/url")


def _block_errors(blocks: list[Any]) -> list[str]:
    return list(_iter_block_errors(blocks))
