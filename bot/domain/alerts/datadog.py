"""Datadog monitor notifications in Slack."""

from __future__ import annotations

import re

from bot.domain.alerts.common import Alert
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.vocab import (
    _build,
    _figures,
    _target,
    find_interface,
    find_target,
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
