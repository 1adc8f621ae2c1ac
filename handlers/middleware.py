"""Cross-cutting request handling: drop Slack's retried deliveries before any listener runs.

Slack re-sends an event (same ``event_id``, ``X-Slack-Retry-Num`` set) when it
did not see our 200 in time; Bolt does not deduplicate, so this does. Events
are remembered for longer than Slack's retry window (about five minutes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from slack_bolt import BoltRequest, BoltResponse

log = logging.getLogger(__name__)

RETRY_WINDOW_SECONDS = 15 * 60


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
