"""The Home tab: published on ``app_home_opened``, refreshed when what it shows changes.

Refreshing is coalesced and rate-limited in one place, :class:`HomeTab`:

* a person opening the tab becomes a *viewer* for ``VIEWER_TTL`` seconds (Slack sends
  ``app_home_opened`` every time the tab is opened, so a viewer renews themselves);
* every ``poll_seconds`` each viewer's tab is rendered again and published only if it differs
  from what was last published, so any number of changes in between cost one ``views.publish``,
  and nothing changed costs none; a Home-tab click re-renders at once, with a one-line notice;
* ``views.publish`` is a Tier 4 method (100+ per minute per workspace, docs.slack.dev
  reference/methods/views.publish); :class:`MinuteBudget` keeps this process under
  ``per_minute`` (90 by default, headroom for a second replica's opens) by waiting, never by
  dropping: a waiting user stays marked and is published when the budget allows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.render.blocks import Reply
from bot.render.home import home_view
from bot.services.home import HomeService
from bot.wiring import Services

log = logging.getLogger(__name__)

POLL_SECONDS = 3.0
VIEWER_TTL = 60 * 60.0
PER_MINUTE = 90
NOTICE_SECONDS = 120.0


class MinuteBudget:
    """At most ``limit`` calls in any 60-second window (a sliding window, not a bucket: a burst of
    ``limit`` is allowed, never more in a minute)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic, window: float = 60.0) -> None:
        self.limit, self._clock, self._window = limit, clock, window
        self._times: deque[float] = deque()

    def wait_time(self) -> float:
        """Seconds until a call is allowed (0 when it is)."""
        now = self._clock()
        while self._times and self._times[0] <= now - self._window:
            self._times.popleft()
        return 0.0 if len(self._times) < self.limit else self._times[0] + self._window - now

    def spend(self) -> None:
        self._times.append(self._clock())


class HomeTab:
    def __init__(self, service: HomeService, client: WebClient, *, poll_seconds: float | None = None,
                 budget: MinuteBudget | None = None) -> None:
        self.service, self.client = service, client
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self.budget = budget or MinuteBudget(PER_MINUTE)
        self._cond = threading.Condition()
        self._viewers: dict[str, float] = {}
        self._dirty: OrderedDict[str, bool] = OrderedDict()  # user -> publish even if unchanged
        self._published: dict[str, str] = {}
        self._notices: dict[str, tuple[str, float]] = {}
        self._stopped = False
        self._thread: threading.Thread | None = None

    # -- what the listeners call -----------------------------------------------------------

    def opened(self, user: str) -> None:
        with self._cond:
            self._viewers[user] = time.monotonic()
        self.mark(user, force=True)

    def mark(self, user: str, notice: str | None = None, force: bool = False) -> None:
        """Render ``user``'s tab again soon (coalesced with whatever is already waiting)."""
        with self._cond:
            if notice:
                self._notices[user] = (notice, time.monotonic() + NOTICE_SECONDS)
            self._dirty[user] = self._dirty.get(user, False) or force
            self._cond.notify_all()
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="xenbot-home", daemon=True)
                self._thread.start()

    def answer_click(self, user: str, reply: Reply) -> None:
        """A Home-tab click's answer goes back into the tab (there is no message to reply under)."""
        self.mark(user, notice=reply.text, force=True)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    # -- the refresher ---------------------------------------------------------------------

    def _run(self) -> None:
        next_poll = time.monotonic() + self.poll_seconds
        while True:
            with self._cond:
                while not self._stopped and not self._dirty and time.monotonic() < next_poll:
                    self._cond.wait(max(0.0, next_poll - time.monotonic()))
                if self._stopped:
                    return
                if time.monotonic() >= next_poll:
                    self._poll_viewers()
                    next_poll = time.monotonic() + self.poll_seconds
                if not self._dirty:
                    continue
                wait = self.budget.wait_time()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                user, force = self._dirty.popitem(last=False)
            try:
                self._publish(user, force)
            except Exception:  # the refresher must outlive any one failure; the next poll tries again
                log.exception("could not refresh the Home tab of %s", user)

    def _poll_viewers(self) -> None:
        now = time.monotonic()
        for user, seen in list(self._viewers.items()):
            if seen < now - VIEWER_TTL:
                del self._viewers[user]
                self._published.pop(user, None)
            elif user not in self._dirty:
                self._dirty[user] = False

    def _publish(self, user: str, force: bool) -> None:
        with self._cond:
            notice = self._notices.get(user)
            if notice and notice[1] < time.monotonic():
                del self._notices[user]
                notice = None
        view = home_view(self.service.data(user, notice[0] if notice else None))
        fingerprint = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()
        with self._cond:
            if not force and self._published.get(user) == fingerprint:
                return
            self.budget.spend()
        try:
            self.client.views_publish(user_id=user, view=view)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("views.publish for %s failed: %s", user, exc)
            return
        with self._cond:
            self._published[user] = fingerprint


_TABS: weakref.WeakKeyDictionary[App, HomeTab] = weakref.WeakKeyDictionary()


def home_service(services: Services) -> HomeService:
    return HomeService(services.inspection, services.changes, services.policies, services.alerts,
                       services.access, services.router.members_of)


def register(app: App, services: Services, client: WebClient) -> HomeTab:
    tab = HomeTab(home_service(services), client)
    _TABS[app] = tab

    def on_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            tab.opened(str(event["user"]))  # only marks: the refresher thread publishes

    app.event("app_home_opened")(on_home_opened)
    return tab


def stop(app: App) -> None:
    """Stop the app's Home refresher (for tests and an orderly shutdown)."""
    tab = _TABS.pop(app, None)
    if tab is not None:
        tab.stop()
