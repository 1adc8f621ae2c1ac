"""The Bolt app, assembled from the listener modules."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient

from bot.wiring import Services
from handlers import actions, commands, events, forms, home
from handlers.middleware import SeenDeliveries, Triggers, dedupe_events
from handlers.work import WorkPool

log = logging.getLogger(__name__)


def build_app(
    services: Services, client: WebClient, *, verify_token: bool = True, work: WorkPool | None = None
) -> App:
    slack = services.settings.slack
    app = App(
        client=client,
        signing_secret=slack.signing_secret.get_secret_value() if slack.signing_secret else "",
        token_verification_enabled=verify_token,
        # Our listeners only ack and hand the work to ``work`` (handlers/work.py), so they can run
        # inline where the request arrived (handlers/http_server.py's event loop). Otherwise Bolt
        # runs them on an executor and polls every 10 ms for the ack, which costs more than they do.
        process_before_response=True,
        ignoring_self_events_enabled=True,
    )
    work = work or WorkPool.from_settings(services.settings.serving)
    app.middleware(dedupe_events(SeenDeliveries()))
    triggers = Triggers(services.sessions)
    commands.register(app, services, work, triggers)
    home_tab = home.register(app, services, client)  # the Home tab and its refresher
    actions.register(app, services, work, triggers, home_tab.answer_click)
    forms.register(app, services, work)  # the offload form and the message shortcut
    events.register(app, services, work)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
        reference = secrets.token_hex(4)
        log.error("unhandled error in Slack listener (reference %s)", reference, exc_info=error)
        return BoltResponse(status=500, body=f"xenbot failed (reference {reference})")

    return app
