"""Block Kit as plain JSON, and the one place that keeps Slack's limits.

Blocks are plain dicts so the same reply can go to Slack, be printed by the
console, or be stored. :func:`fit` is applied to every reply on its way out:
whatever a renderer produced, Slack never sees more than 50 blocks, a section
over 3,000 characters, or a message over its total budget — the overflow goes
into a file instead of an ``invalid_blocks`` error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.domain.slack_text import escape

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
# Slack rejects messages whose blocks add up to roughly 12k characters (msg_blocks_too_long).
MAX_TOTAL_TEXT = 11000
MAX_FALLBACK_TEXT = 3000

Block = dict[str, Any]


@dataclass(frozen=True)
class Attachment:
    """A file to upload next to the message when the answer is too large to show in it."""

    filename: str
    title: str
    content: str


@dataclass(frozen=True)
class Reply:
    # Plain text for notifications and clients without blocks; escaped when sent.
    text: str
    blocks: list[Block] = field(default_factory=list)
    ephemeral: bool = True
    file: Attachment | None = None
    # Set when the reply starts an approval or otherwise must go to a specific channel.
    channel: str | None = None
    thread_ts: str | None = None
    # Errors and refusals stay private even when someone presses "Share".
    error: bool = False
    # The notification text already in Slack markup, when the renderer put xenbot's own mentions
    # (``<@U…>``, ``<#C…>``) in it and escaped everything else itself; see fallback_text.
    fallback: str | None = None


def fallback_text(reply: Reply) -> str:
    """What a transport sends as ``text``: the renderer's own markup, or the plain text escaped."""
    return reply.fallback if reply.fallback is not None else escape(reply.text)


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}}


def fields_section(pairs: Sequence[tuple[str, str]]) -> Block:
    """Up to ten label/value fields; values are expected already escaped."""
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", 2000)} for k, v in pairs[:10]],
    }


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER_TEXT), "emoji": True}}


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _clip(t, MAX_SECTION_TEXT)} for t in texts[:MAX_CONTEXT_ELEMENTS]],
    }


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str = "", style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": _clip(text, MAX_BUTTON_TEXT), "emoji": True},
        "action_id": action_id[:255],
        "value": value[:MAX_BUTTON_VALUE],
    }
    if style in ("primary", "danger"):
        element["style"] = style
    return element


def actions(*elements: dict[str, Any], block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements[:MAX_ACTIONS_ELEMENTS])}
    if block_id:
        block["block_id"] = block_id[:255]
    return block


def table_lines(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A fixed-width text table; values are not escaped here (see :func:`code_sections`)."""
    materialised = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for row in materialised:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip()]
    lines += [fmt.format(*row).rstrip() for row in materialised]
    return lines


def code_sections(lines: Sequence[str]) -> list[Block]:
    """Pre-formatted text split into as many sections as needed, each under the section limit."""
    blocks: list[Block] = []
    chunk: list[str] = []
    size = 0
    budget = MAX_SECTION_TEXT - 8  # the ``` fences and newlines
    for raw in lines:
        line = escape(raw)[:budget]
        if chunk and size + len(line) + 1 > budget:
            blocks.append(section("```" + "\n".join(chunk) + "```"))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        blocks.append(section("```" + "\n".join(chunk) + "```"))
    return blocks


def block_text_size(block: Block) -> int:
    total = 0
    text = block.get("text")
    if isinstance(text, dict):
        total += len(str(text.get("text", "")))
    for item in block.get("fields", []) + block.get("elements", []):
        if isinstance(item, dict):
            inner = item.get("text")
            total += len(str(inner.get("text", ""))) if isinstance(inner, dict) else len(str(inner or ""))
    return total


def fit(reply: Reply, full_listing: str | None = None, filename: str = "xenbot.txt") -> Reply:
    """Trim a reply to Slack's limits; what does not fit goes to a file with the full listing."""
    blocks = list(reply.blocks)
    keep: list[Block] = []
    used = 0
    overflow = False
    # Actions (buttons) are kept at the end, so budget for them first.
    tail = [b for b in blocks if b.get("type") == "actions"][-1:]
    body = [b for b in blocks if b not in tail]
    tail_size = sum(block_text_size(b) for b in tail)
    for block in body:
        size = block_text_size(block)
        if len(keep) + len(tail) + 1 >= MAX_BLOCKS or used + size + tail_size > MAX_TOTAL_TEXT:
            overflow = True
            break
        keep.append(block)
        used += size
    file = reply.file
    if overflow:
        shown = sum(1 for b in keep if b.get("type") == "section")
        note = "Too long for one message: the rest is in the attached file."
        if full_listing is not None and file is None:
            file = Attachment(filename=filename, title=filename, content=full_listing)
        elif file is None:
            note = f"Too long for one message: showing the first {shown} parts."
        keep.append(context(note))
    text = _clip(reply.text, MAX_FALLBACK_TEXT)
    return replace(reply, blocks=keep + tail, file=file, text=text)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = "…"
    if text.endswith("```"):
        return text[: limit - len(marker) - 3] + marker + "```"
    return text[: limit - len(marker)] + marker
