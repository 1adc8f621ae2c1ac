"""Getting a :class:`Reply` to the person: response_url, a channel post, and a file when large.

A private (ephemeral) answer's file goes to the person alone, in their direct messages with
xenbot: uploaded to the channel, a 600-VM listing someone asked for quietly was shared with
everyone in it. Only a reply that is posted for everyone takes its file to the channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    target = reply.channel
    if reply.file is not None:
        if reply.ephemeral and not target:
            reply = upload_privately(reply, client, user_id)
        elif target or channel_id:
            reply = upload_attachment(reply, client, target or channel_id or "", reply.thread_ts)
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


DM_NOTE = "The full listing is in your direct messages with xenbot; only you can see it."


def delay_notice(respond: Respond) -> Callable[[float], None]:
    """What to tell someone whose command or click is still waiting for a free worker."""

    def notify(waited: float) -> None:
        try:
            respond(
                text=f"xenbot is busy right now; your answer is on its way (waiting {waited:.0f} s so far).",
                response_type="ephemeral",
                replace_original=False,
            )
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.info("could not say that an answer is delayed: %s", exc)

    return notify


def upload_privately(reply: Reply, client: WebClient, user_id: str | None) -> Reply:
    """Send the file to the person's DM with xenbot (conversations.open, then the upload) and
    say so in the private answer; on failure say why, and share nothing."""
    assert reply.file is not None
    try:
        if not user_id:
            raise ValueError("no user to send it to")
        opened = client.conversations_open(users=user_id)
        dm = str((opened.get("channel") or {}).get("id") or "")
        if not dm:
            raise ValueError("Slack opened no direct message")
    except (SlackApiError, SlackClientError, ValueError) as exc:
        return _without_file(reply, exc, "no direct message with you could be opened")
    return upload_attachment(reply, client, dm, None, private=True)


def upload_attachment(
    reply: Reply, client: WebClient, channel_id: str, thread_ts: str | None, *, private: bool = False
) -> Reply:
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
        if private:
            return _without_file(reply, exc, "the upload to your direct messages failed")
        error = _error(exc)
        log.warning("could not upload %s: %s", reply.file.filename, error)
        return _with_note(
            reply, f"Could not attach the full listing ({error}); invite xenbot to this channel or use the console."
        )
    return _with_note(reply, DM_NOTE) if private else replace(reply, file=None)


def _without_file(reply: Reply, exc: Exception, what: str) -> Reply:
    assert reply.file is not None
    error = _error(exc)
    log.warning("%s: %s: %s", reply.file.filename, what, error)
    return _with_note(
        reply, f"Could not send you the full listing privately ({what}: {error}); the console shows all of it."
    )


def _with_note(reply: Reply, text: str) -> Reply:
    """A context line before the reply's last block (its buttons stay at the end), and no file."""
    return replace(reply, blocks=[*reply.blocks[:-1], context(text), *reply.blocks[-1:]], file=None)


def _error(exc: Exception) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else str(exc)
