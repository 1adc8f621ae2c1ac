"""The real bot, served over real HTTP, talking to the simulator and to a fake Slack.

``RunningBot`` is what every end-to-end test drives: it signs requests exactly
as Slack does, posts them to ``xenbot serve --http``'s server, and reads the
answers from the fake Slack Web API / response_url recordings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from bot.db.models import ChangeRequest
from bot.health import readiness
from bot.settings import PoolSettings, Settings, SlackSettings
from bot.wiring import Services, build
from handlers import alert_webhooks, home
from handlers.app import build_app
from handlers.client import web_client
from handlers.directory import GroupDirectory
from handlers.http_server import HttpServer
from handlers.messenger import SlackMessenger
from tests.slack.fake_slack import FakeSlack
from tests.slack.fixtures import BOT_TOKEN, SIGNING_SECRET
from tests.slack.signing import block_actions, event_callback, post_signed, slash_command
from tests.slack.signing_views import encoded

APPROVALS = "C0APPROVE"
REQUESTER = "U123"
LEAD = "U0LEAD"


def wait_state(bot: RunningBot, request_id: int, *states: str, timeout: float = 15.0) -> ChangeRequest:
    deadline = time.monotonic() + timeout
    while True:
        with bot.services.sessions() as session:
            request = session.get(ChangeRequest, request_id)
            if request is not None and request.state in states:
                return request
        if time.monotonic() > deadline:
            raise AssertionError(f"change #{request_id} is {request.state if request else None}, wanted {states}")
        time.sleep(0.05)


def approval_card(bot: RunningBot, request_id: int) -> dict[str, Any]:
    posted = bot.fake.wait_for(
        "chat.postMessage",
        predicate=lambda c: c.args.get("channel") == APPROVALS and f"Change #{request_id}:" in str(c.args.get("text")),
    )[-1]
    return posted.response["message"] | {"ts": posted.response["ts"]}


def action_ids(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


@dataclass
class RunningBot:
    url: str
    services: Services
    fake: FakeSlack

    def command(self, text: str, *, user: str = "U123", channel: str = "C123") -> tuple[int, str]:
        """Send a signed /xen command; returns (HTTP status, response_url to read the answer from)."""
        response_url = self.fake.response_url(channel_id=channel, user_id=user)
        body = slash_command(text, user_id=user, channel_id=channel, response_url=response_url)
        status, _headers, _body = post_signed(self.url, body, SIGNING_SECRET)
        return status, response_url

    def click(
        self, action_id: str, value: str, *, user: str = "U123", channel: str = "C123", message_ts: str | None = None
    ) -> tuple[int, str]:
        response_url = self.fake.response_url(channel_id=channel, user_id=user)
        body = block_actions(
            action_id, value, user_id=user, channel_id=channel, response_url=response_url, message_ts=message_ts
        )
        status, _headers, _body = post_signed(self.url, body, SIGNING_SECRET)
        return status, response_url

    def interact(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """Post one signed interaction (tests/slack/signing_views.py builds them); returns the HTTP
        status and the JSON the app answered with (options, ``response_action``), if any."""
        status, _headers, body = post_signed(self.url, encoded(payload), SIGNING_SECRET)
        return status, (json.loads(body) if body.strip().startswith(b"{") else None)

    def home(self, user: str, predicate: Any = None, timeout: float = 15.0) -> dict[str, Any]:
        """The Home tab Slack holds for ``user`` once it satisfies ``predicate`` (text in, view out)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.fake.views.home(user)
            if view is not None and (predicate is None or predicate(json.dumps(view["blocks"]))):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"Home tab of {user} never became as expected: {view!r}"[:3000])
            time.sleep(0.05)

    def event(self, event: dict[str, Any], *, event_id: str | None = None, retry: int | None = None) -> int:
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        status, _headers, _body = post_signed(
            self.url, event_callback(event, event_id=event_id), SIGNING_SECRET, extra_headers=headers
        )
        return status

    def replies(self, response_url: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The messages posted to one response_url (waits for ``count`` of them)."""
        deadline = time.monotonic() + timeout
        while True:
            posted = [
                c.body for c in self.fake.calls("response_url") if response_url.endswith(c.path) and c.status == 200
            ]
            if len(posted) >= count or time.monotonic() > deadline:
                if len(posted) < count:
                    raise AssertionError(f"expected {count} replies on {response_url}, got {posted!r}")
                return posted  # type: ignore[return-value]
            time.sleep(0.02)

    def reply_text(self, response_url: str, timeout: float = 10.0) -> str:
        return message_text(self.replies(response_url, timeout=timeout)[-1])


def message_text(message: dict[str, Any]) -> str:
    """All the text a person would read in a message: fallback text and every block."""
    return (message.get("text") or "") + "\n" + json.dumps(message.get("blocks") or [], ensure_ascii=False)


def bot_settings(sims: dict[str, Any], fake: FakeSlack, database_url: str, **slack: Any) -> Settings:
    pools = [PoolSettings(name=name, url=sim.url, password=SecretStr(sim.password)) for name, sim in sims.items()]
    slack_settings = SlackSettings(
        bot_token=SecretStr(BOT_TOKEN),
        signing_secret=SecretStr(SIGNING_SECRET),
        api_url=fake.base_url,
        **slack,
    )
    settings = Settings(pools=pools, slack=slack_settings)
    return settings.model_copy(update={"database_url": database_url})


@contextmanager
def running_bot(settings: Settings, fake: FakeSlack) -> Iterator[RunningBot]:
    client = web_client(settings)
    directory = GroupDirectory(client)
    services = build(settings, members_of=directory.members_of, messenger=SlackMessenger(client))
    app = build_app(services, client)
    server = HttpServer(app, "127.0.0.1", 0, ready=lambda: readiness(services), signing_secret=SIGNING_SECRET,
                        limits=settings.serving, routes=alert_webhooks.routes(services))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningBot(f"http://127.0.0.1:{server.server_address[1]}/slack/events", services, fake)
    finally:
        home.stop(app)
        server.shutdown()
        server.server_close()
        services.close()
