"""Prometheus Alertmanager's Slack notifier (``notify/slack``, ``template/default.tmpl``)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from bot.domain.alerts.common import Alert, Source, Status, make_identity
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
_AM_TITLE = re.compile(
    r"^\s*\[(?P<state>FIRING|RESOLVED)(?::(?P<count>\d+))?(?:,\s*RESOLVED:(?P<resolved>\d+))?\]\s*(?P<rest>.*)$",
    re.I | re.M,
)
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


# windows_exporter NIC labels ("Citrix_PV_Network_Adapter__0", "Intel_R__PRO_1000_MT_Network_Connection"): never a VM.
_NIC_LABEL = re.compile(
    r"adapter|ethernet|network_connection|vmxnet|virtio|realtek|broadcom|_nic_|^nic_|_nic$|^vif\d", re.I
)
# Where one alert's lines begin in a text listing several: Alertmanager/Grafana "Labels:" lists,
# or the widespread custom Slack template's "*Alert:* …" heading.
_STATE_HEADING = re.compile(r"^\s*\*{1,2}(Firing|Resolved)\*{1,2}\s*$", re.I | re.M)
_SECTION_START = re.compile(r"^\s*(?:\*?Alert:\*?\s|\*?Labels:\*?\s*$|Value:\s)", re.I | re.M)


def parse_alertmanager(content: MessageContent) -> Alert | None:
    """Prometheus Alertmanager's Slack notifier (default or lightly customised template)."""
    return read_grouped(content, "alertmanager")


def read_grouped(content: MessageContent, source: Source) -> Alert | None:
    """An Alertmanager-style notification (Alertmanager or Grafana): one alert, or a group of them.

    The subject names only the labels every alert of the group shares, so a
    ``[FIRING:2]`` subject has no instance in it; the alerted targets are then
    read from the per-alert lines of the text, one member alert each. Without
    such lines (the default Slack template has no text) the group is returned
    without a target and without members: xenbot cannot tell which VMs fired.
    """
    match = _AM_TITLE.search(content.title) or _AM_TITLE.search(content.text)
    if not match:
        return None
    count = int(match.group("count") or 1) + int(match.group("resolved") or 0)
    members = _members(content, source, match)
    if len(members) > 1 or (members and count > 1):
        first = members[0]
        group_status: Status = "firing" if any(m.firing for m in members) else "resolved"
        return replace(first, status=group_status, title=match.group(0).strip(), members=tuple(members), count=count)
    if count > 1:
        rest = match.group("rest").strip()
        status: Status = "firing" if match.group("state").upper() == "FIRING" else "resolved"
        return Alert(
            source=source,
            status=status,
            target="",
            title=match.group(0).strip()[:500],
            identity=make_identity(source, "", None, rest),
            raw_text=content.text,
            name=rest.split(" ", 1)[0] if rest else "",
            count=count,
        )
    return _single(content, source, match)


def _members(content: MessageContent, source: Source, head: re.Match[str]) -> list[Alert]:
    """One alert per section of the text that names its own target; others are left out.

    A section's status is the last ``**Firing**`` / ``**Resolved**`` heading before it
    (Grafana's default message lists both kinds), else the subject's."""
    at = content.text.find(head.group(0))
    body = content.text[at + len(head.group(0)) :] if at >= 0 else content.text
    headings = [(m.start(), m.group(1).lower()) for m in _STATE_HEADING.finditer(body)]
    starts = [m.start() for m in _SECTION_START.finditer(body)]
    # "Value:" and "Labels:" both open a Grafana alert: keep only the first start of each alert.
    sections: list[tuple[int, str]] = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(body)
        chunk = body[start:end]
        if sections and not _labels(sections[-1][1]).keys() & {*_AM_TARGET_KEYS}:
            sections[-1] = (sections[-1][0], sections[-1][1] + chunk)
        else:
            sections.append((start, chunk))
    alerts: list[Alert] = []
    seen: set[str] = set()
    for start, section in sections:
        labels = _labels(section)
        if not any(labels.get(k) for k in _AM_TARGET_KEYS):
            continue
        heading = next((state for position, state in reversed(headings) if position < start), None)
        resolved = heading == "resolved" if heading else head.group("state").upper() == "RESOLVED"
        line = f"[{'RESOLVED' if resolved else 'FIRING'}] " + " ".join(f'{k}="{v}"' for k, v in labels.items())
        part = replace(content, text=f"{line}\n{section}", title=line)
        alert = _single(part, source, _AM_TITLE.search(line))
        if alert is not None and alert.identity not in seen:
            seen.add(alert.identity)
            alerts.append(replace(alert, title=head.group(0).strip()[:500]))
    return alerts


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for label in _AM_LABEL.finditer(_URL.sub(" ", text)):
        labels.setdefault(
            label.group("k").lower(), label.group("q") if label.group("q") is not None else label.group("v")
        )
    for label in _AM_TEXT_LABEL.finditer(_URL.sub(" ", text)):
        key = label.group("k").strip().lower().replace(" ", "_")
        labels.setdefault(key, label.group("v").strip())
    return labels


def _single(content: MessageContent, source: Source, match: re.Match[str] | None) -> Alert | None:
    """One alert: the subject's label values, then ``key=value`` and ``*key:* value`` lines of the text."""
    if match is None:
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
        if interface is None and (find_interface(token) == token or _NIC_LABEL.search(token)):
            interface = token
        elif find_interface(token) == token or _NIC_LABEL.search(token):
            continue
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
        source,
        status,
        target,
        name=name or "alert",
        title=title_line,
        target_ip=target_ip,
        interface=interface,
        direction_text=direction_hint,
        severity=labels.get("severity"),
    )
