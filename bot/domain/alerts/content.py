"""Slack message events flattened into :class:`MessageContent`: text, title, fields, colour, sender.

Every monitoring tool posts differently (attachments with fields, plain text
with links, Block Kit) and Slack hands the text over escaped; the parsers read
this one flattened shape instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from bot.domain.alerts.common import (
    _EMPTY,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_PART_CHARS,
    MAX_TEXT_CHARS,
    SenderKind,
    _empty,
    normal_color,
)
from bot.domain.slack_text import unescape


@dataclass(frozen=True, slots=True)
class AttachmentContent:
    """One legacy attachment, unescaped; the shape Alertmanager, Zabbix and LibreNMS post."""

    title: str = ""
    text: str = ""
    pretext: str = ""
    fallback: str = ""
    color: str | None = None
    fields: Mapping[str, str] = field(default_factory=_empty)
    footer: str = ""


@dataclass(frozen=True, slots=True)
class MessageContent:
    """Everything readable in one Slack message, unescaped, plus the structure parsers need.

    ``text`` holds every piece (top-level text, attachment pretext/title/text/
    fields as ``Title: value`` lines, block text) one per line, without exact
    duplicates — a person's message repeats its text in a ``rich_text`` block,
    and Alertmanager's ``fallback`` repeats its title. ``fields`` merges the
    attachment fields (and ``*Label:* value`` block fields), first one wins.
    """

    text: str = ""
    title: str = ""
    fields: Mapping[str, str] = field(default_factory=_empty)
    color: str | None = None
    attachments: tuple[AttachmentContent, ...] = ()
    sender: str = ""
    sender_kind: SenderKind = "unknown"
    edited: bool = False
    footer: str = ""
    xenbot: bool = False

    def field_value(self, *names: str) -> str | None:
        """A field by title, ignoring case and a trailing colon; ``None`` when absent."""
        wanted = {n.lower().rstrip(":").strip() for n in names}
        for title, value in self.fields.items():
            if title.lower().rstrip(":").strip() in wanted:
                return value
        return None


def _str(value: object, limit: int = MAX_PART_CHARS) -> str:
    """Text from a JSON value: strings as they are, numbers written out, anything else ignored."""
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def _list(value: object) -> list[Any]:
    return list(value[:MAX_ITEMS]) if isinstance(value, list | tuple) else []


def _map(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _text_object(obj: object) -> str:
    """A Block Kit text object (``mrkdwn`` or ``plain_text``) or a bare string, unescaped."""
    if isinstance(obj, str):
        return unescape(obj[:MAX_PART_CHARS])
    return unescape(_str(_map(obj).get("text")))


_RICH_CONTAINERS: Final = frozenset(
    {"rich_text", "rich_text_section", "rich_text_list", "rich_text_preformatted", "rich_text_quote"}
)


def _rich_leaf(item: Mapping[Any, Any]) -> str:
    kind = item.get("type")
    if kind == "text":
        return _str(item.get("text"))
    if kind == "link":
        return _str(item.get("text")) or _str(item.get("url"))
    if kind == "emoji":
        name = _str(item.get("name"))
        return f":{name}:" if name else ""
    if kind == "user":
        return f"<@{_str(item.get('user_id'))}>"
    if kind == "channel":
        return f"<#{_str(item.get('channel_id'))}>"
    if kind == "broadcast":
        return f"@{_str(item.get('range'))}"
    if kind == "date":
        return _str(item.get("fallback"))
    return ""


def _rich_text(elements: object, depth: int) -> str:
    """Rich-text leaves joined; each section, list or quote becomes its own line.

    Leaves are kept as they are: Slack does not HTML-escape rich-text elements,
    only ``mrkdwn`` strings.
    """
    if depth > MAX_DEPTH:
        return ""
    lines: list[str] = []
    inline: list[str] = []
    for element in _list(elements):
        item = _map(element)
        if item.get("type") in _RICH_CONTAINERS:
            if inline:
                lines.append("".join(inline))
                inline = []
            lines.append(_rich_text(item.get("elements"), depth + 1))
        else:
            inline.append(_rich_leaf(item))
    if inline:
        lines.append("".join(inline))
    return "\n".join(line for line in lines if line.strip()).strip()


_BOLD_LABEL = re.compile(r"^\*([^*\n]{1,60}?)\s*:?\s*\*\s*:?\s*(.+)$", re.S)  # "*Host:*\nweb01", "*Host*: web01"


def _block_texts(blocks: object, parts: list[str], fields: dict[str, str], depth: int = 0) -> None:
    """Text of Block Kit blocks: section text and fields, header, context, rich text (recursively)."""
    if depth > MAX_DEPTH:
        return
    for raw in _list(blocks):
        block = _map(raw)
        kind = block.get("type")
        if kind == "rich_text":
            parts.append(_rich_text(block.get("elements"), 0))
        elif kind in ("section", "header"):
            parts.append(_text_object(block.get("text")))
            for item in _list(block.get("fields")):
                text = _text_object(item)
                parts.append(text)
                match = _BOLD_LABEL.match(text.strip())
                if match and "*" in text:  # "*Host:*\nweb01": a label/value pair, like an attachment field
                    label, value = match.group(1).strip(), match.group(2).strip()
                    fields.setdefault(label, value)
                    parts.append(f"{label}: {value}")
        elif kind == "context":
            for item in _list(block.get("elements")):
                element = _map(item)
                if element.get("type") in ("mrkdwn", "plain_text"):
                    parts.append(_text_object(element))
        elif kind == "attachment" or "blocks" in block:  # nested containers some apps use
            _block_texts(block.get("blocks"), parts, fields, depth + 1)
        elif "text" in block:
            parts.append(_text_object(block.get("text")))


def _attachment(raw: Mapping[Any, Any], parts: list[str], fields: dict[str, str]) -> AttachmentContent:
    title = unescape(_str(raw.get("title")))
    text = unescape(_str(raw.get("text")))
    pretext = unescape(_str(raw.get("pretext")))
    fallback = unescape(_str(raw.get("fallback")))
    color = normal_color(_str(raw.get("color")))
    footer = unescape(_str(raw.get("footer")))
    own: dict[str, str] = {}
    field_lines: list[str] = []
    for item in _list(raw.get("fields")):
        entry = _map(item)
        name = unescape(_str(entry.get("title"))).strip()
        value = unescape(_str(entry.get("value"))).strip()
        if name or value:
            own.setdefault(name, value)
            fields.setdefault(name, value)
            field_lines.append(f"{name}: {value}" if name else value)
    parts.extend((pretext, title, text, *field_lines))
    _block_texts(raw.get("blocks"), parts, fields, 1)
    # Alertmanager's fallback is "title | url" and LibreNMS's repeats the text: keep it only when it adds something.
    head = fallback.split(" | ", 1)[0].strip()
    if head and not any(head in p for p in parts if p):
        parts.append(fallback)
    return AttachmentContent(title, text, pretext, fallback, color, MappingProxyType(own), footer)


def _sender(message: Mapping[Any, Any]) -> tuple[str, SenderKind]:
    profile = _map(message.get("bot_profile"))
    username = _str(message.get("username"), 200)
    if message.get("subtype") == "bot_message":
        return username or _str(profile.get("name"), 200) or _str(message.get("bot_id"), 200), "integration"
    if message.get("bot_id") or profile:
        return _str(profile.get("name"), 200) or username or _str(message.get("bot_id"), 200), "app"
    if message.get("user"):
        return _str(message.get("user"), 200), "person"
    return username, "unknown"


def message_text(event: object) -> MessageContent:
    """Flatten a Slack message event into unescaped text and structure; never raises.

    An edit (``subtype: message_changed``) is read from its new content under
    ``message`` and marked ``edited``: Zabbix resolves a problem by editing the
    original post, so the edit *is* the resolution. Anything that is not a
    mapping gives empty content.
    """
    if not isinstance(event, Mapping):
        return MessageContent()
    message: Mapping[Any, Any] = event
    edited = False
    if event.get("subtype") == "message_changed" and isinstance(event.get("message"), Mapping):
        message = event["message"]
        edited = True
    parts: list[str] = [unescape(_str(message.get("text")))]
    fields: dict[str, str] = {}
    attachments = tuple(
        _attachment(item, parts, fields) for item in _list(message.get("attachments")) if isinstance(item, Mapping)
    )
    block_parts: list[str] = []
    _block_texts(message.get("blocks"), block_parts, fields)
    parts.extend(block_parts)

    seen: set[str] = set()
    unique: list[str] = []
    total = 0
    for part in parts:
        cleaned = part.strip()
        if not cleaned or cleaned in seen:
            continue
        seen.add(cleaned)
        unique.append(cleaned)
        total += len(cleaned) + 1
        if total > MAX_TEXT_CHARS:
            break
    text = "\n".join(unique)[:MAX_TEXT_CHARS]

    title = next((a.title for a in attachments if a.title), "")
    if not title:
        headers = (_map(b) for b in _list(message.get("blocks")))
        title = next((_text_object(h.get("text")) for h in headers if h.get("type") == "header"), "")
    if not title and unique:
        title = unique[0].split("\n", 1)[0][:500]
    color = next((a.color for a in attachments if a.color), None)
    sender, kind = _sender(message)
    return MessageContent(
        text=text,
        title=title.strip(),
        fields=MappingProxyType(fields),
        color=color,
        attachments=attachments,
        sender=sender,
        sender_kind=kind,
        edited=edited,
        footer=next((a.footer for a in attachments if a.footer), ""),
        xenbot=is_xenbot_message(message),
    )


XENBOT_ACTION_PREFIX: Final = "xenbot_"


def is_xenbot_message(message: Mapping[Any, Any]) -> bool:
    """A reply posted by xenbot, this install or another (a staging bot in the same channel).

    Every diagnosis xenbot posts carries buttons whose ``action_id`` starts with
    ``xenbot_``; Slack delivers the blocks with the message, so the marker
    survives whichever app posted it. Such a message is never an alert.
    """
    for raw in _list(message.get("blocks")):
        block = _map(raw)
        if _str(block.get("block_id")).startswith("xenbot"):
            return True
        for element in _list(block.get("elements")):
            if _str(_map(element).get("action_id")).startswith(XENBOT_ACTION_PREFIX):
                return True
        accessory = _map(block.get("accessory"))
        if _str(accessory.get("action_id")).startswith(XENBOT_ACTION_PREFIX):
            return True
    return False
