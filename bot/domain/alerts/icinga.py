"""Icinga2's Slack notification scripts: service notifications in plain text (Nagios shares the reader)."""

from __future__ import annotations

import re

from bot.domain.alerts.common import Alert, Source
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.vocab import (
    _IP,
    _build,
    _Figures,
    _figures,
    _target,
    find_interface,
)

_ICINGA = re.compile(
    r"(?P<type>PROBLEM|RECOVERY|ACKNOWLEDGEMENT|FLAPPINGSTART|FLAPPINGEND|CUSTOM|DOWNTIMESTART|DOWNTIMEEND)\s*[:\-]\s*"
    r"Service\s+(?P<svc>[^\n]{1,200}?)\s+"
    r"(?:transitioned from state (?P<from>\w+) to state (?P<to>\w+)|is still in state (?P<still>\w+)"
    r"|(?:is|has)\s+(?P<state>\w+))"
    r"\s+on host\s+(?P<host>\S{1,255}?)\.?(?:\s|$)",
    re.I,
)
_ICINGA_FIELDS = re.compile(
    r"HOST:\s*(?P<host>\S{1,255})\s+SERVICE:\s*(?P<svc>.{1,200}?)\s+STATE:\s*(?P<state>\w{1,20})", re.I
)
# Notification types about an alert that are not a firing (Icinga2's and Nagios's $notification.type$).
_NOT_FIRING = frozenset(
    {"ACKNOWLEDGEMENT", "DOWNTIMESTART", "DOWNTIMEEND", "DOWNTIMECANCELLED", "DOWNTIMEREMOVED", "FLAPPINGSTART",
     "FLAPPINGEND", "FLAPPINGSTOP", "FLAPPINGDISABLED", "CUSTOM"}
)  # fmt: skip
_PLUGIN_OUTPUT = re.compile(r"(?:Plugin output|Additional Info|Info|Output)\s*:\s*(?P<out>.+)", re.I | re.S)
_ADDRESS = re.compile(r"^\s*Address:\s*(?P<addr>\S+)", re.I | re.M)


def parse_icinga(content: MessageContent) -> Alert | None:
    """Icinga2's Slack notification text (service notifications only: discards are per service)."""
    match = _ICINGA.search(content.text) or _ICINGA_FIELDS.search(content.text)
    return None if match is None else service_alert(content, match, "icinga")


def service_alert(
    content: MessageContent,
    match: re.Match[str],
    source: Source,
    *,
    state: str | None = None,
    plugin: str | None = None,
) -> Alert | None:
    """An Icinga2 or Nagios service notification, from the match of its head line.

    ``state`` and ``plugin`` are for formats that do not spell them in the head
    line (the Nagios webhook script gives its state only as an emoji)."""
    text = content.text
    groups = match.groupdict()
    kind = (groups.get("type") or "").upper()
    state = state or (groups.get("to") or groups.get("still") or groups.get("state") or "").upper()
    resolved = kind == "RECOVERY" or state in ("OK", "UP")
    # A reminder is PROBLEM again ("is still in state CRITICAL"): the same alert firing, a repeat.
    update = kind in _NOT_FIRING and not resolved
    if "nagios" in content.sender.lower():
        source = "nagios"
    service = groups["svc"].strip()
    if plugin is None:
        output = _PLUGIN_OUTPUT.search(text[match.start() :])
        plugin = output.group("out").strip() if output else ""
    plugin = re.sub(r"\s*\bSee Nagios\s*$", "", plugin.strip().strip("`").strip())
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
        update=update,
    )
