"""The services' messages, posted and updated through the Slack Web API."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from bot.render.blocks import Reply, fallback_text
from bot.render.charts import Chart
from bot.services.progress import RateLimited
from bot.services.traffic import UploadFailed
from bot.settings import Settings
from handlers.delivery import upload_attachment

# How long a progress update may take before it is given up (the next one carries newer figures).
PROGRESS_TIMEOUT_SECONDS = 5.0


def slack_messenger(settings: Settings) -> SlackMessenger:
    """For apply processes, which build their own client from settings (picklable by reference)."""
    from handlers.client import web_client

    return SlackMessenger(web_client(settings))


class SlackMessenger:
    def __init__(self, client: WebClient) -> None:
        self.client = client
        # Progress goes through a client that does not sleep out a 429 (the progress sender pauses
        # the channel instead, bot/services/progress.py) and gives up on a slow Slack sooner.
        self._progress_client = WebClient(
            token=client.token,
            base_url=client.base_url,
            timeout=min(client.timeout, PROGRESS_TIMEOUT_SECONDS),  # type: ignore[arg-type]
            retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
        )

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str | None:
        if reply.file is not None:
            reply = upload_attachment(reply, self.client, channel, thread_ts)
        response = self.client.chat_postMessage(
            channel=channel, text=fallback_text(reply), blocks=reply.blocks, thread_ts=thread_ts
        )
        ts = response.get("ts")
        return str(ts) if ts else None

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        # A file was attached when the message was first posted; updates only change the blocks.
        self.client.chat_update(channel=channel, ts=ts, text=fallback_text(reply), blocks=reply.blocks)

    def upload(self, channel: str, chart: Chart, thread_ts: str | None = None, *, private_to: str | None = None) -> str:
        """A chart (PNG) with ``files_upload_v2``: into the thread, or privately into the person's
        direct messages with xenbot (a private answer's file is never shared with the channel)."""
        where = "in the thread" if thread_ts else "in the channel"
        try:
            if private_to:
                opened = self.client.conversations_open(users=private_to)
                channel = str((opened.get("channel") or {}).get("id") or "")
                where = "sent to your direct messages with xenbot"
            self.client.files_upload_v2(channel=channel, content=chart.png, filename=chart.filename,
                                        title=chart.title, thread_ts=thread_ts)
        except SlackApiError as exc:
            raise UploadFailed(str(exc.response.get("error"))) from None
        except SlackClientError as exc:
            raise UploadFailed(str(exc)) from None
        return where

    def update_progress(self, channel: str, ts: str, reply: Reply) -> None:
        """Like ``update``, but a 429 raises :class:`RateLimited` at once instead of being waited out."""
        try:
            self._progress_client.chat_update(channel=channel, ts=ts, text=fallback_text(reply), blocks=reply.blocks)
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                raise RateLimited(_retry_after(exc.response.headers)) from None
            raise


def _retry_after(headers: object) -> float:
    """Slack's ``Retry-After`` in seconds (1 when absent or unreadable), whatever the header's case."""
    items = headers.items() if isinstance(headers, dict) else []
    for name, value in items:
        if str(name).lower() == "retry-after":
            value = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(float(str(value)), 1.0)
            except ValueError:
                return 1.0
    return 1.0
