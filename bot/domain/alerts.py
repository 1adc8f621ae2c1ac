"""Monitoring alerts about NIC discards, read from Slack messages.

xenbot answers discard alerts in the alert channel's thread, so it first has to
recognise one. Every monitoring tool posts differently — an attachment with a
title and fields (Alertmanager, Zabbix, LibreNMS, Datadog), plain text with
links (Icinga2, Nagios, PRTG), Block Kit from newer apps — and Slack hands the
text over escaped, with host names turned into ``<url|label>`` links. This
module flattens a message event into :class:`MessageContent`, then tries one
small parser per tool, then a cautious generic reader.

Three promises matter more than coverage:

* :func:`parse_alert` never raises. It runs on every message of a busy
  channel, including edits, joins and whatever a person pastes; a crash there
  would take the listener down for one odd message.
* It answers ``None`` unless the message is about discards or dropped packets.
  A CPU or disk alert must not get a discard diagnosis, and a figure is only
  read where the text ties it to a direction or a packet unit — a threshold or
  a port number is never reported as the measured value.
* :attr:`Alert.identity` is the same for the firing, the resolved and the
  edited version of one alert (Zabbix resolves by editing the original
  message), so the bot can find its earlier reply instead of answering twice.

Pure: no Slack, XAPI or database imports; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from bot.domain.slack_text import unescape

Source = Literal["alertmanager", "zabbix", "librenms", "icinga", "nagios", "prtg", "datadog", "generic"]
Status = Literal["firing", "resolved"]
Direction = Literal["rx", "tx"]
SenderKind = Literal["person", "integration", "app", "unknown"]

SOURCES: Final[tuple[Source, ...]] = (
    "alertmanager",
    "zabbix",
    "librenms",
    "icinga",
    "nagios",
    "prtg",
    "datadog",
    "generic",
)

# Bounds that keep a pathological message cheap: Slack itself caps a message far below these.
MAX_PART_CHARS: Final = 20_000
MAX_TEXT_CHARS: Final = 60_000
MAX_ITEMS: Final = 100  # attachments, blocks, fields, elements per level
MAX_DEPTH: Final = 10  # nesting of rich_text elements

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _EMPTY


# --------------------------------------------------------------------------------------------
# Message content
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttachmentContent:
    """One legacy attachment, unescaped; the shape Alertmanager, Zabbix and LibreNMS post."""

    title: str = ""
    text: str = ""
    pretext: str = ""
    fallback: str = ""
    color: str | None = None
    fields: Mapping[str, str] = field(default_factory=_empty)


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
    color = _str(raw.get("color")) or None
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
    return AttachmentContent(title, text, pretext, fallback, color, MappingProxyType(own))


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
    )


# --------------------------------------------------------------------------------------------
# The alert
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    """A discard alert as the monitoring tool stated it; nothing here is looked up or guessed.

    ``target`` is the VM name, host name or IP exactly as the tool gave it
    (a Prometheus ``instance`` loses its ``:port``); resolving it to a VM is
    the service's job. ``rx``/``tx`` are the figures tied to a direction;
    ``value`` is a figure given without one (Zabbix ``Opdata: 1520 packets``).
    ``unit`` is ``"packets"`` for counts, ``"pkt/s"`` for rates, ``"%"`` for
    ratios, or ``None`` when the tool did not say.
    """

    source: Source
    status: Status
    target: str
    title: str
    identity: str
    raw_text: str
    target_ip: str | None = None
    interface: str | None = None
    directions: frozenset[Direction] = frozenset()
    rx: float | None = None
    tx: float | None = None
    value: float | None = None
    unit: str | None = None
    name: str = ""
    severity: str | None = None

    @property
    def firing(self) -> bool:
        return self.status == "firing"


def make_identity(source: str, target: str, interface: str | None, name: str) -> str:
    """The dedup key: what the alert is about, never its state or figures (they change between posts)."""
    return "|".join(_norm(p) for p in (source, target, interface or "", name))


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# --------------------------------------------------------------------------------------------
# Shared vocabulary: discards, directions, interfaces, figures, targets
# --------------------------------------------------------------------------------------------

_URL = re.compile(r"https?://\S+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _words(text: str) -> str:
    """Text for keyword tests: no URLs; camelCase and snake_case split (``ifInDiscards`` → ``if In Discards``)."""
    return re.sub(r"[_.]", " ", _CAMEL.sub(" ", _URL.sub(" ", text)))


_DISCARD_WORD = re.compile(r"\bdiscard(?:s|ed|ing)?\b|\bdrops\b", re.I)
_DROP_CONTEXT = re.compile(
    r"\b(?:drop|dropped|dropping)\b(?:\W{1,5}\w{1,40}){0,3}?\W{1,5}"
    r"(?:packets?|pkts?|frames?|rx|tx|receive[ds]?|transmit(?:ted|s)?|inbound|outbound|ingress|egress|nic|interfaces?)\b"
    r"|\b(?:packets?|pkts?|frames?|rx|tx|receive[ds]?|transmit(?:ted|s)?|inbound|outbound|ingress|egress|nic)"
    r"(?:\W{1,5}\w{1,40}){0,2}?\W{1,5}(?:drop|dropped|dropping)\b",
    re.I,
)


def mentions_discards(text: str) -> bool:
    """Whether text talks about discarded or dropped packets (not "disk space dropped below 10%")."""
    words = _words(text)
    return bool(_DISCARD_WORD.search(words) or _DROP_CONTEXT.search(words))


_BOTH = re.compile(
    r"\b(?:tx\s*(?:and|&|/|\+)\s*rx|rx\s*(?:and|&|/|\+)\s*tx|both\s+directions|in\s*(?:and|/)\s*out|"
    r"inbound\s+and\s+outbound|outbound\s+and\s+inbound|receive\s+and\s+transmit|transmit\s+and\s+receive)\b",
    re.I,
)
# Host names like "dal-tx-01" must not count, hence no dash on either side.
_RX_WORD = re.compile(
    r"(?<![\w\-])(?:rx|receive[ds]?|received|receiving|inbound|incoming|ingress|recv)(?![\w\-])", re.I
)
_TX_WORD = re.compile(r"(?<![\w\-])(?:tx|transmit(?:s|ted|ting)?|outbound|outgoing|egress)(?![\w\-])", re.I)
# "in"/"out" are ordinary English words: count them only next to a discard word, as a key, or as PRTG's "Discards In".
_IN_NEAR = re.compile(
    r"\b(?:discards?|drops?|dropped|discarded)\s+in\b(?=\s*(?:[:=)\],;]|$))|\bin\s+(?:packets?\s+)?(?:discards?|drops?|dropped|discarded)\b"
    r"|(?<![\w.])in\s*[:=]\s*\d",
    re.I | re.M,
)
_OUT_NEAR = re.compile(
    r"\b(?:discards?|drops?|dropped|discarded)\s+out\b(?=\s*(?:[:=)\],;]|$))|\bout\s+(?:packets?\s+)?(?:discards?|drops?|dropped|discarded)\b"
    r"|(?<![\w.])out\s*[:=]\s*\d",
    re.I | re.M,
)
_CHANNEL_DIR = re.compile(r"\b(?:Discards|Drops)\s+(In|Out)\b")


def directions_in(text: str) -> frozenset[Direction]:
    """Directions a text speaks of: in/rx/receive/inbound → rx, out/tx/transmit/outbound → tx, "Tx and Rx" → both."""
    words = _words(text)
    found: set[Direction] = set()
    if _BOTH.search(words):
        found.update(("rx", "tx"))
    if _RX_WORD.search(words) or _IN_NEAR.search(words):
        found.add("rx")
    if _TX_WORD.search(words) or _OUT_NEAR.search(words):
        found.add("tx")
    for match in _CHANNEL_DIR.finditer(words):
        found.add("rx" if match.group(1) == "In" else "tx")
    return frozenset(found)


_IFACE = re.compile(
    r"(?<![\w.\-])(?:"
    r"(?:eth|ens|enp|eno|enx|em|bond|vif|tap|xenbr|xapi|xn|vtnet|igb|ixl|ix|vmx|hn|re|wlan|br)\d+(?:[.:s]\d+)*(?:[a-z]\d+)*"
    r"|Local Area Connection(?: #?\d+)?"
    r"|Ethernet \d+"
    r"|Ethernet(?=\s*(?:$|[;,)\"'\]]))"
    r"|NIC ?\d+"
    r")(?![\w\-])",
    re.M,
)


def find_interface(text: str) -> str | None:
    """The first NIC name in text: eth0, ens192, vif3.0, xn0, "Local Area Connection 2", "Ethernet 2"."""
    match = _IFACE.search(_URL.sub(" ", text))
    return match.group(0) if match else None


def _pick_interface(*candidates: str | None) -> str | None:
    """Of several names for one NIC, the one that looks like an interface name; else the first given."""
    given = [c.strip() for c in candidates if c and c.strip()]
    for candidate in given:
        found = find_interface(candidate)
        if found:
            return found
    return given[0] if given else None


_NUM = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_UNIT = r"#/s|pkts?/s|packets?/s(?:ec)?|packets per second|p/s|pps|/s|%|packets|pkts|discards|drops"
_KEYED = re.compile(
    rf"(?<![\w.\-'])'?(?P<key>[A-Za-z][\w.\-]{{0,60}}?(?: [A-Za-z][\w.\-]{{0,30}}?){{0,3}}?)'?\s*[:=]\s*"
    rf"(?P<num>{_NUM})(?!\d)(?:\s*(?P<unit>{_UNIT}))?",
)
_DIR_SPACED = re.compile(
    rf"(?<![\w\-])(?P<dir>rx|tx)(?:_(?:dropped|drops?|discard(?:s|ed)?))?\s+(?P<num>{_NUM})(?![\d.,]*\d)"
    rf"(?:\s*(?P<unit>{_UNIT}))?",
    re.I,
)
# "receive drops 152/s", "discards 1520": the figure after the word, direction (if any) just before it.
_AFTER = re.compile(
    r"(?<![\w\-])(?:(?P<dir>rx|tx|inbound|outbound|incoming|outgoing|receive|transmit)\s+)?(?:packet\s+)?"
    rf"(?:discards|drops|dropped packets|discarded packets)\s*[:=]?\s*(?P<num>{_NUM})(?![\d.,]*\d)"
    rf"(?:\s*(?P<unit>{_UNIT}))?",
    re.I,
)
_COUNTED = re.compile(
    rf"(?<![\w.])(?P<num>{_NUM})\s*(?P<unit>{_UNIT})?\s+(?:(?P<dir>rx|tx|inbound|outbound|incoming|outgoing)\s+)?"
    r"(?:packets?\s+)?(?:discards|drops|discarded|dropped)\b",
    re.I,
)
_UNITED = re.compile(
    rf"(?<![\w.])(?P<num>{_NUM})(?:\s*(?P<unit>#/s|pkts?/s|packets?/s(?:ec)?|pps|packets|pkts)\b|(?P<rate>/s)\b)", re.I
)

_RX_TOKENS: Final = frozenset({"in", "rx", "receive", "received", "inbound", "incoming", "ingress", "ifin", "recv"})
_TX_TOKENS: Final = frozenset(
    {"out", "tx", "transmit", "transmitted", "outbound", "outgoing", "egress", "ifout", "sent"}
)
_DISCARD_TOKENS: Final = frozenset({"discard", "discards", "discarded", "drop", "drops", "dropped"})
_NEUTRAL_TOKENS: Final = frozenset(
    {
        "if",
        "packets",
        "packet",
        "pkts",
        "pkt",
        "rate",
        "delta",
        "count",
        "total",
        "per",
        "sec",
        "s",
        "value",
        "current",
        "last",
    }
)
_VALUE_KEYS: Final = frozenset({"value", "current", "last", "lastvalue", "currentvalue", "lastval"})
_OTHER_METRIC_TOKENS: Final = frozenset(
    {
        "error", "errors", "err", "errs", "octets", "bytes", "bits", "bps", "utilization", "util", "usage",
        "speed", "limit", "threshold", "crc", "collisions", "mtu", "ucast", "mcast", "bcast", "unicast",
        "multicast", "broadcast", "queue", "time", "latency", "ms", "warn", "crit", "min", "max",
    }
)  # fmt: skip


def _tokens(key: str) -> list[str]:
    return [t for t in re.split(r"[_.\-\s]+", _CAMEL.sub("_", key).lower()) if t]


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _unit(unit: str | None, key_tokens: Iterable[str] = ()) -> str | None:
    """Normalise what the tool wrote: rates → ``pkt/s``, counts → ``packets``, ratios → ``%``."""
    tokens = set(key_tokens)
    if unit:
        u = unit.lower()
        if u == "%":
            return "%"
        if "/s" in u or u in ("pps", "p/s") or "second" in u:
            return "pkt/s"
        return "packets"
    if "rate" in tokens:
        return "pkt/s"
    if tokens & {"delta", "count", "total"}:
        return "packets"
    return None


@dataclass(slots=True)
class _Figures:
    rx: float | None = None
    tx: float | None = None
    value: float | None = None
    unit: str | None = None

    def put(self, direction: Direction | None, number: float | None, unit: str | None) -> None:
        if number is None:
            return
        if direction == "rx" and self.rx is None:
            self.rx = number
        elif direction == "tx" and self.tx is None:
            self.tx = number
        elif direction is None and self.value is None:
            self.value = number
        else:
            return
        if unit and self.unit is None:
            self.unit = unit

    def settle(self, directions: frozenset[Direction]) -> None:
        """A lone undirected figure belongs to the one direction the alert names, if it names exactly one."""
        if self.rx is None and self.tx is None and self.value is not None and len(directions) == 1:
            if "rx" in directions:
                self.rx = self.value
            else:
                self.tx = self.value
            self.value = None
        elif self.rx is not None or self.tx is not None:
            self.value = None


def _word_direction(word: str) -> Direction | None:
    w = word.lower()
    if w in _RX_TOKENS:
        return "rx"
    if w in _TX_TOKENS:
        return "tx"
    return None


def extract_figures(text: str) -> tuple[float | None, float | None, float | None, str | None]:
    """(rx, tx, undirected value, unit) read where the text ties a number to a direction or a packet unit.

    Only these shapes count: ``Rx: 1520``, ``in=1200``, ``ifInDiscards_rate = 152``,
    ``rx 152``, ``1520 packets discarded``, ``152 pkt/s``. A bare number —
    a threshold, a port, a duration — is never taken as the measurement.
    """
    figures = _figures(text)
    return figures.rx, figures.tx, figures.value, figures.unit


def _figures(text: str) -> _Figures:
    figures = _Figures()
    clean = _URL.sub(" ", text)
    for match in _KEYED.finditer(clean):
        tokens = _tokens(match.group("key"))
        if not tokens or set(tokens) & _OTHER_METRIC_TOKENS:
            continue
        rx = any(t in _RX_TOKENS for t in tokens)
        tx = any(t in _TX_TOKENS for t in tokens)
        discard = any(t in _DISCARD_TOKENS for t in tokens)
        plain = all(t in _RX_TOKENS | _TX_TOKENS | _NEUTRAL_TOKENS | _DISCARD_TOKENS for t in tokens)
        unit = _unit(match.group("unit"), tokens)
        number = _number(match.group("num"))
        if rx != tx and (discard or plain):
            figures.put("rx" if rx else "tx", number, unit)
        elif not rx and not tx and (discard or "".join(tokens) in _VALUE_KEYS) and plain:
            figures.put(None, number, unit)
    for spaced in _DIR_SPACED.finditer(clean):
        figures.put(_word_direction(spaced.group("dir")), _number(spaced.group("num")), _unit(spaced.group("unit")))
    for after in _AFTER.finditer(clean):
        figures.put(_word_direction(after.group("dir") or ""), _number(after.group("num")), _unit(after.group("unit")))
    for counted in _COUNTED.finditer(clean):
        direction = _word_direction(counted.group("dir") or "")
        figures.put(direction, _number(counted.group("num")), _unit(counted.group("unit") or "packets"))
    if figures.rx is None and figures.tx is None and figures.value is None:
        united = _UNITED.search(clean)
        if united:
            figures.put(None, _number(united.group("num")), _unit(united.group("unit") or united.group("rate")))
    return figures


_IP = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
)
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_\-]*[A-Za-z0-9])?)*$")


def find_ip(text: str) -> str | None:
    match = _IP.search(text)
    return match.group(0) if match else None


def _strip_port(value: str) -> str:
    """``web01:9100`` → ``web01``; ``10.0.1.21:9182`` → ``10.0.1.21``; IPv6 and plain names are left alone."""
    value = value.strip().strip("\"'`")
    if value.startswith("[") and "]" in value:  # [fe80::1]:9100
        return value[1 : value.index("]")]
    if value.count(":") == 1:
        host, port = value.split(":")
        if port.isdigit():
            return host
    return value


def _target(value: str | None) -> tuple[str, str | None]:
    """A target as given, its port dropped, and its IP when it is one."""
    if not value:
        return "", None
    cleaned = _strip_port(value)
    ip = cleaned if _IP.fullmatch(cleaned) else None
    return cleaned, ip


_STOP_TARGETS: Final = frozenset(
    {
        "the", "a", "an", "this", "that", "it", "its", "average", "all", "both", "each", "any", "host", "hosts",
        "vm", "vms", "server", "interface", "interfaces", "port", "ports", "nic", "nics", "device", "network",
        "is", "was", "has", "have", "for", "of", "in", "out", "rx", "tx", "and", "or", "to", "at", "by", "with",
        "from", "since", "now", "state", "link", "up", "down", "warning", "critical", "ok", "problem", "alert",
    }
)  # fmt: skip
_TARGET_PATTERNS: Final = (
    re.compile(r"\b(?:VM|vm|Vm|virtual machine|guest)\b\s*[:=]?\s*[\"'`]?(?P<t>[A-Za-z0-9][\w.\-]*)"),
    re.compile(
        r"\b(?:host(?:name)?|server|instance|node|machine|device)\b\s*[:=]?\s*[\"'`]?(?P<t>[A-Za-z0-9][\w.\-:]*)",
        re.I,
    ),
    re.compile(r"\bon\s+[\"'`]?(?P<t>[A-Za-z0-9][\w.\-:]*)", re.I),
)


def _hostish(token: str, strict: bool) -> bool:
    token = token.rstrip(".,;:!?")
    if not token or token.lower() in _STOP_TARGETS or find_interface(token) == token:
        return False
    if not _HOSTNAME.match(_strip_port(token)) or not re.search(r"[A-Za-z]", token):
        return bool(_IP.fullmatch(_strip_port(token)))
    return not strict or bool(re.search(r"[\d\-._]", token))


def find_target(text: str) -> str | None:
    """A VM or host name the text points at ("VM x", "host x", "on x", or an IP), port dropped; ``None`` if none."""
    clean = _URL.sub(" ", text)
    for index, pattern in enumerate(_TARGET_PATTERNS):
        for match in pattern.finditer(clean):
            token = match.group("t").rstrip(".,;:!?")
            # "on x" is loose English: accept only names that look like machine names (digits, dashes, dots).
            if _hostish(token, strict=index == 2):
                return _strip_port(token)
    return find_ip(clean)


_RESOLVED_WORDS = re.compile(
    r"^\W*(?:\[\s*)?(?:resolved|recovered|recovery|cleared|ok)\b"
    r"|\b(?:has been resolved|is resolved|recovered|back to normal|cleared)\b",
    re.I,
)
_GOOD_COLORS: Final = frozenset({"good", "#009900", "#00ff00", "#2eb886", "#36a64f", "green"})


def _status_from(text: str, color: str | None) -> Status:
    if _RESOLVED_WORDS.search(text):
        return "resolved"
    if (
        color
        and color.lower() in _GOOD_COLORS
        and not re.search(r"\b(?:firing|problem|triggered|critical)\b", text, re.I)
    ):
        return "resolved"
    return "firing"


def _build(
    content: MessageContent,
    source: Source,
    status: Status,
    target: str,
    *,
    name: str,
    identity_interface: bool = True,
    title: str | None = None,
    target_ip: str | None = None,
    interface: str | None = None,
    figures: _Figures | None = None,
    direction_text: str | None = None,
    severity: str | None = None,
) -> Alert | None:
    target = target.strip()
    if not target:
        return None
    if target_ip is None and _IP.fullmatch(target):
        target_ip = target
    figures = figures if figures is not None else _figures(content.text)
    directions = set(directions_in(direction_text if direction_text is not None else content.text))
    if figures.rx is not None:
        directions.add("rx")
    if figures.tx is not None:
        directions.add("tx")
    frozen = frozenset(directions)
    figures.settle(frozen)
    name = " ".join(name.split())
    return Alert(
        source=source,
        status=status,
        target=target,
        title=(title if title is not None else content.title).strip()[:500],
        identity=make_identity(source, target, interface if identity_interface else None, name),
        raw_text=content.text,
        target_ip=target_ip,
        interface=interface.strip() if interface else None,
        directions=frozen,
        rx=figures.rx,
        tx=figures.tx,
        value=figures.value,
        unit=figures.unit,
        name=name,
        severity=severity.strip() if severity else None,
    )


# --------------------------------------------------------------------------------------------
# One parser per tool
# --------------------------------------------------------------------------------------------

# Default template: "[FIRING:1] <group label values> (<other common label values>)"; custom ones often key="value".
_AM_TITLE = re.compile(r"^\s*\[(?P<state>FIRING|RESOLVED)(?::\d+)?(?:,\s*RESOLVED:\d+)?\]\s*(?P<rest>.*)$", re.I | re.M)
_AM_LABEL = re.compile(
    r"(?<![A-Za-z0-9_])(?P<k>[A-Za-z_][A-Za-z0-9_]{0,60})\s*=\s*(?:\"(?P<q>[^\"\n]{0,500})\"|(?P<v>[^\s,()\"]{1,500}))"
)
_AM_TEXT_LABEL = re.compile(r"^\s*[-•*]?\s*\*?(?P<k>[A-Za-z_][\w ]{0,30}?)\s*:\*?\s*`?(?P<v>[^`\n]+?)`?\s*$", re.M)
_AM_TARGET_KEYS: Final = ("vm", "vm_name", "xen_vm", "domain", "nodename", "hostname", "host", "instance", "target")
_AM_IFACE_KEYS: Final = ("device", "interface", "ifname", "ifdescr", "ifalias", "nic", "iface")
_SEVERITIES: Final = frozenset(
    {"critical", "warning", "info", "page", "high", "low", "error", "major", "minor", "none"}
)
_JOBS: Final = frozenset(
    {"node", "node-exporter", "node_exporter", "windows", "windows-exporter", "windows_exporter", "wmi", "snmp",
     "prometheus", "blackbox", "federate", "kubernetes-nodes"}
)  # fmt: skip


def parse_alertmanager(content: MessageContent) -> Alert | None:
    """Prometheus Alertmanager's Slack notifier (default or lightly customised template)."""
    match = _AM_TITLE.search(content.title) or _AM_TITLE.search(content.text)
    if not match:
        return None
    status: Status = "firing" if match.group("state").upper() == "FIRING" else "resolved"
    rest = match.group("rest").strip()
    title_line = match.group(0).strip()

    labels: dict[str, str] = {}
    body = _URL.sub(" ", content.text)  # generator URLs carry expr=... query strings, not labels
    for source_text in (rest, body):
        for label in _AM_LABEL.finditer(source_text):
            labels.setdefault(
                label.group("k").lower(), label.group("q") if label.group("q") is not None else label.group("v")
            )
    for label in _AM_TEXT_LABEL.finditer(body):
        key = label.group("k").strip().lower().replace(" ", "_")
        labels.setdefault(key, label.group("v").strip())

    # Bare values (the default template writes values without their names): classify each by its look.
    group, _, common = rest.partition("(")
    bare = [t for t in re.split(r"\s+", f"{group} {common.rstrip(')')}") if t and "=" not in t]
    name = labels.get("alertname") or (group.split()[0] if group.split() and "=" not in group.split()[0] else "")
    interface = next((labels[k] for k in _AM_IFACE_KEYS if labels.get(k)), None)
    target_value = next((labels[k] for k in _AM_TARGET_KEYS if labels.get(k)), None)
    leftovers: list[str] = []
    for token in bare:
        if token == name:
            continue
        if interface is None and find_interface(token) == token:
            interface = token
        elif ":" in token and token.rsplit(":", 1)[1].isdigit():
            target_value = target_value or token
        elif token.lower() in _SEVERITIES or token.lower() in _JOBS or _word_direction(token):
            continue
        else:
            leftovers.append(token)
    if target_value is None:
        target_value = next((t for t in leftovers if _hostish(t, strict=False)), None)
    target, target_ip = _target(target_value)
    if not target:
        found = find_target(content.text)
        target, target_ip = _target(found)
    for value in labels.values():  # an IP in another label (instance) when the target came from a name label
        ip = _target(value)[1]
        if ip and target_ip is None:
            target_ip = ip
    if interface is None:
        interface = find_interface(content.text)
    direction_hint = " ".join(filter(None, (labels.get("direction"), content.text)))
    return _build(
        content,
        "alertmanager",
        status,
        target,
        name=name or "alert",
        title=title_line,
        target_ip=target_ip,
        interface=interface,
        direction_text=direction_hint,
        severity=labels.get("severity"),
    )


_ZBX_TITLE = re.compile(
    r"^\s*(?P<state>Problem(?: has been resolved| resolved)?|Resolved|Recovery|OK|Updated problem)"
    r"(?:\s+(?:in|at)\s+[^:\n]{0,60})?\s*:\s*(?P<name>.+)$",
    re.I | re.M,
)


def _zabbix_host(value: str) -> tuple[str, str | None]:
    """``win2008r2-sql01 [10.0.1.21]`` → name and IP (``{HOST.CONN}`` may also be a DNS name: then no IP)."""
    value = value.strip()
    if value.endswith("]") and "[" in value:
        cut = value.rindex("[")
        name, conn = value[:cut].strip(), value[cut + 1 : -1].strip()
        return name or conn, conn if _IP.fullmatch(conn) else None
    return value, None


# Zabbix LLD names: "Interface {#IFNAME}({#IFALIAS}): ..." or "Interface {#IFNAME}: ...".
_ZBX_INTERFACE = re.compile(r"\bInterface\s+(?P<names>[^:\n]{1,200}):", re.I)


def _lld_names(names: str) -> tuple[str, ...]:
    """``Local Area Connection 2(Citrix PV Ethernet Adapter #1)`` → the alias first, then the name."""
    names = names.strip()
    if names.endswith(")") and "(" in names:
        cut = names.index("(")
        return names[cut + 1 : -1], names[:cut]
    return (names,)


def parse_zabbix(content: MessageContent) -> Alert | None:
    """Zabbix's Slack media type: attachment titled by the subject, fields Host / Event time / Severity / Opdata."""
    host_field = content.field_value("Host")
    zabbix_fields = host_field is not None and (
        content.field_value("Event time") is not None
        or content.field_value("Opdata") is not None
        or content.field_value("Severity") is not None
    )
    match = _ZBX_TITLE.search(content.title) or _ZBX_TITLE.search(content.text)
    if not zabbix_fields and not (match and ("zabbix" in content.sender.lower() or "zabbix" in content.text.lower())):
        return None
    name = match.group("name").strip() if match else content.title
    state = match.group("state").lower() if match else ""
    resolved = state.startswith(("resolved", "recovery", "ok", "problem has been resolved", "problem resolved"))
    resolved = resolved or bool(re.search(r"\bProblem has been resolved\b", content.text, re.I))
    resolved = resolved or (not match and (content.color or "").lower() == "#009900")
    status: Status = "resolved" if resolved else "firing"

    target, target_ip = "", None
    if host_field:
        target, target_ip = _zabbix_host(host_field)
    if not target:
        target = find_target(content.text) or ""
    if target_ip is None:
        target_ip = _target(target)[1]

    tags = content.field_value("Event tags") or ""
    tag_iface = re.search(r"^\s*(?:interface|ifname|ifalias|nic|device)\s*:\s*(.+?)\s*$", tags, re.I | re.M)
    lld = _ZBX_INTERFACE.search(name)
    interface = _pick_interface(
        *(_lld_names(lld.group("names")) if lld else ()),
        find_interface(name),
        tag_iface.group(1) if tag_iface else None,
        find_interface(content.field_value("Trigger description") or ""),
    )
    opdata = content.field_value("Opdata") or ""
    figures = _figures(opdata) if opdata.strip() else _Figures()
    if figures.rx is None and figures.tx is None and figures.value is None:
        figures = _figures(content.text)
    return _build(
        content,
        "zabbix",
        status,
        target,
        name=name,
        title=content.title or (match.group(0) if match else ""),
        target_ip=target_ip,
        interface=interface,
        figures=figures,
        direction_text=" ".join((name, opdata, content.field_value("Trigger description") or "")),
        severity=content.field_value("Severity"),
    )


_LNMS_TITLE = re.compile(
    r"(?:Alert for device (?P<fhost>\S{1,255}) - (?P<frule>[^\n]{1,200}?)"
    r"|(?:Device (?P<rhost>\S{1,255}) recovered from|Recovery for device (?P<rhost2>\S{1,255}) -"
    r"|Recovered device (?P<rhost3>\S{1,255}) -)"
    r" (?P<rrule>[^\n]{1,200}?))"
    r"(?:\s+(?:got acknowledged|got worse|got better|Has been acknowledged|Has worsened|Has improved))?\s*$",
    re.I | re.M,
)
_LNMS_FAULT = re.compile(r"(?<!\w)(?P<k>[A-Za-z]\w{0,60})\s*=\s*(?P<v>[^;\n]{0,200}?)\s*;")


def parse_librenms(content: MessageContent) -> Alert | None:
    """LibreNMS's Slack transport: ``Alert for device X - Rule`` / ``Device X recovered from Rule``.

    The default template lists faults as ``key = value;`` pairs (``ifDescr``, ``ifInDiscards_rate``...).
    """
    match = _LNMS_TITLE.search(content.title) or _LNMS_TITLE.search(content.text)
    if not match:
        return None
    firing = match.group("fhost") is not None
    host = match.group("fhost") or match.group("rhost") or match.group("rhost2") or match.group("rhost3") or ""
    rule = (match.group("frule") if firing else match.group("rrule")) or ""
    faults: dict[str, str] = {}
    for fault in _LNMS_FAULT.finditer(content.text):
        faults.setdefault(fault.group("k").lower(), fault.group("v").strip())
    interface = _pick_interface(faults.get("ifname"), faults.get("ifdescr"), faults.get("ifalias"), faults.get("port"))
    if interface is None:
        interface = find_interface(content.text)
    target, target_ip = _target(host.strip() or faults.get("hostname") or faults.get("sysname"))
    severity = re.search(r"^\s*Severity:\s*(\S+)", content.text, re.I | re.M)
    return _build(
        content,
        "librenms",
        "firing" if firing else "resolved",
        target,
        name=rule,
        title=match.group(0).strip(),
        target_ip=target_ip,
        interface=interface,
        severity=severity.group(1) if severity else None,
        # LibreNMS alerts are per device and rule, and its recovery lists no faults (so no port).
        identity_interface=False,
    )


_ICINGA = re.compile(
    r"(?P<type>PROBLEM|RECOVERY|ACKNOWLEDGEMENT|FLAPPINGSTART|FLAPPINGEND|CUSTOM|DOWNTIMESTART|DOWNTIMEEND)\s*[:\-]\s*"
    r"Service\s+(?P<svc>[^\n]{1,200}?)\s+"
    r"(?:transitioned from state (?P<from>\w+) to state (?P<to>\w+)|(?:is|has)\s+(?P<state>\w+))"
    r"\s+on host\s+(?P<host>\S{1,255}?)\.?(?:\s|$)",
    re.I,
)
_ICINGA_FIELDS = re.compile(
    r"HOST:\s*(?P<host>\S{1,255})\s+SERVICE:\s*(?P<svc>.{1,200}?)\s+STATE:\s*(?P<state>\w{1,20})", re.I
)
_NAGIOS = re.compile(
    r"\*\*\s*(?P<type>PROBLEM|RECOVERY|ACKNOWLEDGEMENT|FLAPPINGSTART|FLAPPINGSTOP|CUSTOM|DOWNTIMESTART|DOWNTIMEEND)"
    r"\s+Service Alert:\s*(?P<host>[^/\s]{1,255})/(?P<svc>[^\n]{1,200}?)\s+is\s+(?P<state>\w{1,20})\s*\*\*",
    re.I,
)
_PLUGIN_OUTPUT = re.compile(r"(?:Plugin output|Additional Info|Info|Output)\s*:\s*(?P<out>.+)", re.I | re.S)
_ADDRESS = re.compile(r"^\s*Address:\s*(?P<addr>\S+)", re.I | re.M)


def parse_icinga_nagios(content: MessageContent) -> Alert | None:
    """Icinga2's and Nagios's Slack notification text (service notifications only: discards are per service)."""
    text = content.text
    icinga = _ICINGA.search(text)
    fielded = None if icinga else _ICINGA_FIELDS.search(text)
    nagios = None if icinga or fielded else _NAGIOS.search(text)
    match = icinga or fielded or nagios
    if match is None:
        return None
    groups = match.groupdict()
    kind = (groups.get("type") or "").upper()
    state = (groups.get("to") or groups.get("state") or "").upper()
    resolved = kind == "RECOVERY" or state in ("OK", "UP")
    source: Source = "nagios" if nagios is not None else "icinga"
    if "nagios" in content.sender.lower():
        source = "nagios"
    service = groups["svc"].strip()
    output = _PLUGIN_OUTPUT.search(text[match.start() :])
    plugin = output.group("out").strip() if output else ""
    address = _ADDRESS.search(text)
    target, target_ip = _target(groups["host"].strip().rstrip("."))
    if address and target_ip is None and _IP.fullmatch(address.group("addr")):
        target_ip = address.group("addr")
    interface = find_interface(service) or find_interface(plugin)
    figures = _figures(plugin) if plugin else _Figures()
    if figures.rx is None and figures.tx is None and figures.value is None:
        figures = _figures(text)
    return _build(
        content,
        source,
        "resolved" if resolved else "firing",
        target,
        name=service,
        title=match.group(0).strip(),
        target_ip=target_ip,
        interface=interface,
        figures=figures,
        direction_text=f"{service}\n{plugin}",
        severity=state or None,
    )


_PRTG_CHANNEL = re.compile(
    r"\((?P<channel>(?:Discards|Drops)\s+(?:In|Out))(?::[^)]*)?\)|\bin\s+(?P<chan2>(?:Discards|Drops)\s+(?:In|Out))\b"
)
_PRTG_HEAD = re.compile(
    r"^\s*(?:\[(?P<site>[^\]\n]*)\]\s*)?(?P<device>\S+)\s+(?P<sensor>[^\n]*?)\s*\((?:Discards|Drops)\s+(?:In|Out)\)"
    r"\s*(?P<status>[^\n]*)$",
    re.M,
)
_PRTG_VALUE = re.compile(rf"(?P<num>{_NUM})\s*(?P<unit>#/s|#|%|/s)?\s+is\s+(?:above|below)\b")
_PRTG_LAST = re.compile(rf"\bLast\s*value\s*[:=]?\s*(?P<num>{_NUM})\s*(?P<unit>#/s|#|%|/s)?", re.I)
_PRTG_STATUS_OK = re.compile(
    r"\b(?:Up|OK)\b(?!\s*(?:limit|since))|\bnow:\s*Up\b|\bDown ended\b|\bWarning ended\b", re.I
)
_PRTG_STATUS_BAD = re.compile(r"\b(?:Down|Warning|Unusual|Error)\b(?!\s+ended)", re.I)


def parse_prtg(content: MessageContent) -> Alert | None:
    """PRTG: ``%device %name %status %down (%message)`` with a Discards In/Out channel and ``#/s`` values."""
    text = content.text
    head = _PRTG_HEAD.search(text)
    channel_match = _PRTG_CHANNEL.search(text)
    prtg_like = (
        "prtg" in content.sender.lower() or "#/s" in text or re.search(r"\b(?:error|warning) limit\b", text, re.I)
    )
    if head is None and not (channel_match and prtg_like):
        return None
    channel = (channel_match.group("channel") or channel_match.group("chan2")) if channel_match else ""
    direction: Direction | None = None
    if channel:
        direction = "rx" if channel.lower().endswith("in") else "tx"
    status_text = head.group("status") if head else text
    ended = re.search(r"\bnow:\s*Up\b|\bDown ended\b|\bWarning ended\b", text, re.I)
    resolved = bool(ended) or (bool(_PRTG_STATUS_OK.search(status_text)) and not _PRTG_STATUS_BAD.search(status_text))
    device = head.group("device") if head else (content.field_value("Device") or find_target(text) or "")
    sensor = head.group("sensor").strip() if head else (content.field_value("Sensor") or "")
    sensor_iface = re.sub(r"^\(\d+\)\s*|\s*Traffic\s*$|^Traffic\s*", "", sensor).strip(" -()")
    interface = _pick_interface(sensor_iface) if sensor_iface else find_interface(text)

    figures = _Figures()
    value = _PRTG_VALUE.search(text) or _PRTG_LAST.search(text)
    last_field = content.field_value("Last Value", "Lastvalue", "Last value")
    if last_field:
        value = _PRTG_LAST.search(f"Last value {last_field}") or value
    if value:
        figures.put(direction, _number(value.group("num")), _unit(value.group("unit")))
    target, target_ip = _target(device)
    return _build(
        content,
        "prtg",
        "resolved" if resolved else "firing",
        target,
        name=f"{sensor} {channel}".strip(),
        title=head.group(0).strip() if head else content.title,
        target_ip=target_ip,
        interface=interface,
        figures=figures,
        direction_text=channel,
    )


_DD_BRACKET = re.compile(
    r"^\s*\[(?P<state>Triggered|Re-Triggered|Recovered|Warn|Re-Warn|No Data|Re-No Data|Recovered from \w+(?: \w+)?)"
    r"(?:\s+on\s+\{(?P<scope>[^}\n]*)\})?\]\s*(?P<name>.+)$",
    re.I | re.M,
)
_DD_PREFIX = re.compile(
    r"^\s*(?P<state>Triggered|Re-Triggered|Recovered|Warn|Re-Warn)\s*:\s*(?:\[P\d\]\s*)?(?P<name>.+)$", re.I | re.M
)
_DD_TAG = re.compile(r"(?<![\w.\-])(?P<k>[A-Za-z_][\w.\-]{0,40}):(?P<v>[^,\s{}()]{1,200})")
_DD_METRIC = re.compile(r"packets?_(?P<dir>in|out)\.(?:drop|discard)|(?<![A-Za-z0-9])(?P<dir2>rx|tx)_drop", re.I)


def parse_datadog(content: MessageContent) -> Alert | None:
    """Datadog monitors: ``[Triggered on {host:x,device:eth0}] Name`` / ``[Recovered on ...] Name``.

    The scope tags name the host and device; the body carries the metric (its
    direction) and whatever ``{{value}}`` the monitor message prints.
    """
    match = _DD_BRACKET.search(content.title) or _DD_BRACKET.search(content.text)
    prefixed = None
    if match is None:
        prefixed = _DD_PREFIX.search(content.title) or _DD_PREFIX.search(content.text)
        datadoggy = (
            "datadog" in content.sender.lower() or "datadog" in content.text.lower() or _DD_METRIC.search(content.text)
        )
        if prefixed is None or not datadoggy:
            return None
    found = match or prefixed
    if found is None:
        return None
    state = found.group("state").lower()
    resolved = state.startswith("recovered")
    scope = (match.group("scope") if match else "") or ""
    name = found.group("name").strip()
    tags: dict[str, str] = {}
    for tag in _DD_TAG.finditer(scope + " " + content.text):
        tags.setdefault(tag.group("k").lower(), tag.group("v"))
    target_value = (
        tags.get("vm") or tags.get("host") or tags.get("hostname") or find_target(name) or find_target(content.text)
    )
    target, target_ip = _target(target_value)
    interface = tags.get("device") or tags.get("interface") or find_interface(name) or find_interface(content.text)
    metric_dirs = {
        ("rx" if (m.group("dir") or m.group("dir2") or "").lower() in ("in", "rx") else "tx")
        for m in _DD_METRIC.finditer(content.text)
    }
    direction_text = " ".join((name, *(f"{d} drops" for d in sorted(metric_dirs))))
    body = content.text.replace(found.group(0), " ")
    figures = _figures(body)
    return _build(
        content,
        "datadog",
        "resolved" if resolved else "firing",
        target,
        name=name,
        title=found.group(0).strip(),
        target_ip=target_ip,
        interface=interface,
        figures=figures,
        direction_text=direction_text + "\n" + body,
    )


def parse_generic(content: MessageContent) -> Alert | None:
    """Any other text about discards that names a target (VM, host, IP).

    A tool's message needs only that. A person's message also needs a figure:
    "seeing drops on web01?" is a question (and "drops" may be calls or
    sessions), while "web01 shows 1,520 discarded packets" reads as a report.
    """
    figures = _figures(content.text)
    no_figure = figures.rx is None and figures.tx is None and figures.value is None
    if no_figure and content.sender_kind == "person":
        return None
    named = content.field_value("VM", "Host", "Hostname", "Server", "Instance", "Device", "Target")
    target, target_ip = _target(named.split()[0] if named and named.split() else find_target(content.text))
    if not target:
        return None
    return _build(
        content,
        "generic",
        _status_from(content.text, content.color),
        target,
        name="discards",
        target_ip=target_ip or find_ip(content.text),
        interface=find_interface(content.text),
        figures=figures,
    )


Parser = Callable[[MessageContent], Alert | None]

PARSERS: Final[tuple[Parser, ...]] = (
    parse_alertmanager,
    parse_zabbix,
    parse_librenms,
    parse_icinga_nagios,
    parse_prtg,
    parse_datadog,
    parse_generic,
)


def parse_alert(event_or_content: object) -> Alert | None:
    """A discard alert from a Slack message event (or already-flattened content), else ``None``; never raises."""
    try:
        content = event_or_content if isinstance(event_or_content, MessageContent) else message_text(event_or_content)
        if not content.text or not mentions_discards(content.text):
            return None
        for parser in PARSERS:
            alert = parser(content)
            if alert is not None:
                return alert
        return None
    except Exception:  # noqa: BLE001 - a listener on a busy channel must survive any one message; None is the honest answer
        return None
