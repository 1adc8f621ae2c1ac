"""Zabbix's Slack media type (``templates/media/slack``)."""

from __future__ import annotations

import re

from bot.domain.alerts.common import Alert, Status, normal_color
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.vocab import (
    _IP,
    _build,
    _Figures,
    _figures,
    _pick_interface,
    _target,
    find_interface,
    find_target,
)

RESOLVE_COLOR = "009900"  # media_slack.yaml's RESOLVE_COLOR, as Slack delivers it

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
    resolved = resolved or (not match and normal_color(content.color) == RESOLVE_COLOR)
    status: Status = "resolved" if resolved else "firing"
    # isEventUpdate in media_slack.yaml: an acknowledgement or comment, posted in the problem's thread.
    update = state.startswith("updated") and not resolved

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
        update=update,
    )
