"""The services' messages, posted and updated through the Slack Web API."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.render.blocks import Reply, fallback_text
from bot.render.charts import Chart
from bot.services.traffic import UploadFailed
from bot.settings import Settings
from handlers.delivery import upload_attachment


def slack_messenger(settings: Settings) -> SlackMessenger:
    """For apply processes, which build their own client from settings (picklable by reference)."""
    from handlers.client import web_client

    return SlackMessenger(web_client(settings))


class SlackMessenger:
    def __init__(self, client: WebClient) -> None:
        self.client = client

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
