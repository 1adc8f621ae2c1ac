"""The Slack Web API client, built once from settings.

Rate limits (HTTP 429 with ``Retry-After``) and transient 5xx answers are
retried by slack_sdk's own retry handlers instead of being dropped; the base
URL comes from settings so tests point the real client at a local fake.
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


def web_client(settings: Settings, *, timeout: int = 30) -> WebClient:
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack.api_url or DEFAULT_API_URL,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )
