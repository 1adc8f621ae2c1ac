"""User-group membership for access checks, cached so a click does not wait on Slack.

``operators`` and ``approvers`` may name user groups (``S…``). Membership is
read with ``usergroups.users.list`` and kept for a few minutes; if Slack cannot
answer, the last known list is used, and with none known the group grants
nothing (fail closed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger(__name__)


class GroupDirectory:
    def __init__(self, client: WebClient, ttl_seconds: float = 300.0) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    def members_of(self, group_id: str) -> Collection[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group_id)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        try:
            response = self._client.usergroups_users_list(usergroup=group_id)
            users: list[object] = response.get("users", [])
            members = frozenset(str(u) for u in users)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("could not read members of user group %s: %s", group_id, exc)
            return cached[1] if cached else frozenset()
        with self._lock:
            self._cache[group_id] = (now, members)
        return members
