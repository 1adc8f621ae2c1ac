"""The Slack Web API client, built once from settings.

Rate limits (HTTP 429 with ``Retry-After``) and transient 5xx answers are
retried by slack_sdk's own retry handlers instead of being dropped; the base
URL comes from settings so tests point the real client at a local fake.

A call that times out is retried once too. Slack may have acted on the first
attempt, so a timed-out post can appear twice; we prefer that to a lost
approval card or summary (every button is re-checked on click, so a second
card is harmless).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
# Waits between start-up attempts to reach Slack (about half a minute in all): rides out a blip
# or a proxy that starts after us; a longer outage is the restart policy's to retry.
START_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)


def web_client(settings: Settings) -> WebClient:
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack.api_url or DEFAULT_API_URL,
        # slack_sdk hands this to urllib, which takes seconds as a float despite the int hint.
        timeout=settings.slack.timeout_seconds,  # type: ignore[arg-type]
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=1, error_types=[TimeoutError]),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


class SlackNotReady(Exception):
    """Start-up cannot go on: ``retryable`` says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def check_token(client: WebClient, delays: Sequence[float] = START_RETRY_DELAYS) -> None:
    """Ask Slack who the bot token belongs to (``auth.test``) before anything is served.

    Bolt asks this too when the app is built, but an answer it does not like ends in a
    traceback; here a refused token is one line saying so (no retry: only a new token helps)
    and an unreachable Slack is retried for a while, then reported likewise."""
    for attempt, delay in enumerate([*delays, None], start=1):
        try:
            client.auth_test()
            return
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown error")
            raise SlackNotReady(f"Slack refused the bot token ({error}): check SLACK_BOT_TOKEN",
                                retryable=False) from None
        except (SlackClientError, OSError) as exc:  # refused, DNS, TLS, timeout (URLError is an OSError)
            reason = f"could not reach Slack at {client.base_url}: {exc}"
            if delay is None:
                raise SlackNotReady(reason, retryable=True) from None
            log.warning("%s (attempt %d; trying again in %.0f s)", reason, attempt, delay)
            time.sleep(delay)
