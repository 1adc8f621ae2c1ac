"""Shared vocabulary of the parsers: discard words, directions, interfaces, figures, targets.

A figure is only read where the text ties it to a direction or a packet unit:
a threshold or a port number is never reported as the measured value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bot.domain.alerts.common import Alert, Direction, Source, Status, is_good_color, make_identity
from bot.domain.alerts.content import MessageContent

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


def strip_port(value: str) -> str:
    """A target as alerts give it, without its port: ``web01:9100`` → ``web01``."""
    return _strip_port(value)


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


def _status_from(text: str, color: str | None) -> Status:
    if _RESOLVED_WORDS.search(text):
        return "resolved"
    if is_good_color(color) and not re.search(r"\b(?:firing|problem|triggered|critical)\b", text, re.I):
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
    update: bool = False,
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
        update=update,
    )
