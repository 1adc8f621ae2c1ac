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

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.settings import Settings

DEFAULT_API_URL = "https://slack.com/api/"


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
