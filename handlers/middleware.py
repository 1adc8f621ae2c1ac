"""Cross-cutting request handling: check Slack's signature from the raw bytes, and drop
Slack's retried deliveries before any listener runs.

Slack re-sends an event (same ``event_id``, ``X-Slack-Retry-Num`` set) when it
did not see our 200 in time; Bolt does not deduplicate, so this does. Events
are remembered for longer than Slack's retry window (about five minutes).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.db import deliveries
from bot.domain.access import CONSOLE_CHANNEL

log = logging.getLogger(__name__)

RETRY_WINDOW_SECONDS = 15 * 60
SIGNATURE_MAX_AGE_SECONDS = 5 * 60  # Slack's own rule (slack_sdk.signature.SignatureVerifier)


class SlackSignature:
    """Slack's request signature, checked on the bytes as they arrived, before anything parses them.

    slack_sdk's verifier (which Bolt runs after parsing the body) calls ``int()`` on the
    timestamp and decodes the body as UTF-8, so an unsigned request with a word for a
    timestamp or a stray byte in its body ended in a 500 and a traceback. Here every
    such request is simply not signed: ``problem`` names why, and nothing else runs."""

    def __init__(self, signing_secret: str, clock: Callable[[], float] = time.time) -> None:
        self._secret = signing_secret.encode()
        self._clock = clock

    def problem(self, headers: Mapping[str, Sequence[str]], body: bytes) -> str | None:
        """None when the request is Slack's; else a short reason fit for a log line."""
        timestamp = next(iter(headers.get("x-slack-request-timestamp", ())), "")
        signature = next(iter(headers.get("x-slack-signature", ())), "")
        if not self._secret:
            return "no signing secret is configured"
        if not timestamp or not signature:
            return "no signature"
        if not (timestamp.isascii() and timestamp.isdigit()):
            return "timestamp is not a number"
        if abs(self._clock() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
            return "timestamp is more than five minutes off"
        expected = "v0=" + hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("latin-1")):
            return "signature does not match"
        return None


class SeenDeliveries:
    """Event ids seen recently; bounded in time and size."""

    def __init__(self, ttl_seconds: float = RETRY_WINDOW_SECONDS, max_entries: int = 50_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self._ttl or len(self._seen) > self._max):
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True


def slack_channel(value: object) -> str | None:
    """The channel a Slack request names, as the access rules should see it.

    The access policy lets ``"console"`` past ``allowed_channels`` because the break-glass
    console runs on a trusted host. Over Slack that name is only text a signed request
    carries (no Slack channel id looks like it), so it counts as no channel at all: with
    ``allowed_channels`` set, such a request is refused like any other stranger."""
    if not isinstance(value, str) or not value:
        return None
    if value == CONSOLE_CHANNEL:
        log.info("a Slack request named the console's channel %r; treated as no channel", value)
        return None
    return value


class Triggers:
    """Slash commands and clicks run once per ``trigger_id``, whichever replica gets them.

    Claimed in the database (``slack_delivery``) by the work thread, not on the ack path:
    the ack stays free of database round trips, and a replay is acked and then dropped.
    If the database cannot answer, this process's own memory decides instead."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._sessions = sessions
        self._clock = clock
        self._memory = SeenDeliveries(ttl_seconds=deliveries.KEEP.total_seconds())

    def first_time(self, body: dict[str, Any]) -> bool:
        trigger = body.get("trigger_id")
        if not isinstance(trigger, str) or not trigger:
            return True  # nothing to tell deliveries apart by
        key = f"trigger:{trigger}"
        try:
            first = deliveries.claim(self._sessions, key, self._clock())
        except SQLAlchemyError as exc:  # the database is down: better this process's memory than nothing
            log.warning("could not record Slack delivery %s (%s); checking this process's memory only", key, exc)
            first = self._memory.first_time(key)
        if not first:
            log.info("dropping repeated delivery of %s from %s", key, body.get("user_id") or (body.get("user") or {}))
        return first


def dedupe_events(seen: SeenDeliveries) -> Callable[..., BoltResponse | None]:
    def middleware(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        body = req.body if isinstance(req.body, dict) else {}
        event_id = body.get("event_id")
        if body.get("type") == "event_callback" and isinstance(event_id, str) and not seen.first_time(event_id):
            retry = req.headers.get("x-slack-retry-num", [""])
            log.info("dropping repeated delivery of %s (retry %s)", event_id, retry[0] if retry else "")
            return BoltResponse(status=200, body="")
        return next()

    return middleware
