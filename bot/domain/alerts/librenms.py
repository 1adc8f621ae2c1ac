"""LibreNMS's Slack transport (``LibreNMS/Alert/Transport/Slack.php``)."""

from __future__ import annotations

import re

from bot.domain.alerts.common import Alert
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.vocab import (
    _build,
    _pick_interface,
    _target,
    find_interface,
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
