"""Getting a :class:`Reply` to the person: response_url, a channel post, and a file when large."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.render.blocks import Reply, context, fallback_text

log = logging.getLogger(__name__)


def deliver(
    reply: Reply,
    *,
    client: WebClient,
    respond: Respond | None,
    channel_id: str | None,
    user_id: str | None,
) -> dict[str, Any] | None:
    """Send the reply; returns the posted message (channel/ts) when it was a channel post."""
    if reply.file is not None and channel_id:
        reply = upload_attachment(reply, client, channel_id, reply.thread_ts)
    target = reply.channel
    if target:
        response = client.chat_postMessage(
            channel=target, text=fallback_text(reply), blocks=reply.blocks, thread_ts=reply.thread_ts
        )
        return {"channel": response.get("channel"), "ts": response.get("ts")}
    if respond is not None:
        try:
            respond(
                text=fallback_text(reply),
                blocks=reply.blocks,
                response_type="ephemeral" if reply.ephemeral else "in_channel",
                replace_original=False,
            )
            return None
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("response_url failed (%s); falling back to the Web API", exc)
    if not channel_id:
        log.error("no way to deliver reply %r: no response_url and no channel", reply.text[:80])
        return None
    if reply.ephemeral and user_id:
        client.chat_postEphemeral(channel=channel_id, user=user_id, text=fallback_text(reply), blocks=reply.blocks)
        return None
    response = client.chat_postMessage(channel=channel_id, text=fallback_text(reply), blocks=reply.blocks)
    return {"channel": response.get("channel"), "ts": response.get("ts")}


def upload_attachment(reply: Reply, client: WebClient, channel_id: str, thread_ts: str | None) -> Reply:
    """Upload the reply's full listing next to it; on failure say so in the reply instead."""
    assert reply.file is not None
    try:
        client.files_upload_v2(
            channel=channel_id,
            content=reply.file.content,
            filename=reply.file.filename,
            title=reply.file.title,
            thread_ts=thread_ts,
        )
    except (SlackApiError, SlackClientError) as exc:
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else str(exc)
        log.warning("could not upload %s: %s", reply.file.filename, error)
        note = context(
            f"Could not attach the full listing ({error}); invite xenbot to this channel or use the console."
        )
        return replace(reply, blocks=[*reply.blocks[:-1], note, *reply.blocks[-1:]], file=None)
    return replace(reply, file=None)
