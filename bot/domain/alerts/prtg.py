"""PRTG's notification text: ``[%sitename] %device %name %status %down (%message)``."""

from __future__ import annotations

import re

from bot.domain.alerts.common import Alert, Direction
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.vocab import (
    _NUM,
    _build,
    _Figures,
    _number,
    _pick_interface,
    _target,
    _unit,
    find_interface,
    find_target,
)

_PRTG_CHANNEL = re.compile(
    r"\((?P<channel>(?:Discards|Drops)\s+(?:In|Out))(?::[^)]*)?\)|\bin\s+(?P<chan2>(?:Discards|Drops)\s+(?:In|Out))\b"
)
_PRTG_HEAD = re.compile(
    r"^\s*(?:\[(?P<site>[^\]\n]*)\]\s*)?(?P<device>\S+)\s+(?P<sensor>[^\n]*?)\s*\((?:Discards|Drops)\s+(?:In|Out)\)"
    r"\s*(?P<status>[^\n]*)$",
    re.M,
)
# The default notification template: "[%sitename] %device %name %status %down (%message)"; %status is
# "Down", "Warning", "Up", "Down (Acknowledged)", "Down ended (now: Up)"…, and the sensor name (%name) comes
# before it, e.g. "win7-kiosk (003) Citrix PV Network Adapter #0 Traffic Down (for 5 m) (152 #/s is above …)".
_PRTG_DEFAULT = re.compile(
    r"^\s*\[(?P<site>[^\]\n]*)\]\s*(?P<device>\S+)\s+(?P<sensor>[^\n]*?)\s+"
    r"(?P<status>(?:Down|Up|Warning|Unusual|Unknown|Paused)(?:\s+\((?:Acknowledged|Partial)\))?(?:\s+ended)?)"
    r"(?P<rest>(?:\s[^\n]*)?)$",
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
    default = None if head else _PRTG_DEFAULT.search(text)
    if default is not None:
        return _default_template(content, default)
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
        name=sensor,  # not the channel: the "Up" notice of a sensor need not name it
        title=head.group(0).strip() if head else content.title,
        target_ip=target_ip,
        interface=interface,
        figures=figures,
        direction_text=channel,
    )


def _default_template(content: MessageContent, head: re.Match[str]) -> Alert | None:
    """PRTG's default template; the "Up" notice names no channel (and no discards), only the sensor."""
    text = content.text
    status = head.group("status")
    rest = head.group("rest")
    resolved = status.startswith("Up") or (status.endswith("ended") and not re.search(r"now:\s*Down", rest, re.I))
    channel_match = _PRTG_CHANNEL.search(rest)
    channel = (channel_match.group("channel") or channel_match.group("chan2")) if channel_match else ""
    direction: Direction | None = ("rx" if channel.lower().endswith("in") else "tx") if channel else None
    sensor = head.group("sensor").strip()
    sensor_iface = re.sub(r"^\(\d+\)\s*|\s*Traffic\s*$|^Traffic\s*", "", sensor).strip(" -")
    figures = _Figures()
    value = _PRTG_VALUE.search(rest) or _PRTG_LAST.search(rest)
    if value and not resolved:
        figures.put(direction, _number(value.group("num")), _unit(value.group("unit")))
    target, target_ip = _target(head.group("device"))
    return _build(
        content,
        "prtg",
        "resolved" if resolved else "firing",
        target,
        name=sensor,
        title=head.group(0).strip(),
        target_ip=target_ip,
        interface=_pick_interface(sensor_iface) if sensor_iface else find_interface(text),
        figures=figures,
        direction_text=channel,
    )
