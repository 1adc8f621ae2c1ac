"""Prometheus Alertmanager's Slack notifier (``notify/slack``, ``template/default.tmpl``)."""

from __future__ import annotations

import re
from typing import Final

from bot.domain.alerts.common import Alert, Status
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.vocab import (
    _URL,
    _build,
    _hostish,
    _target,
    _word_direction,
    find_interface,
    find_target,
)

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
