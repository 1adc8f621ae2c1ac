"""Nagios's Slack notification scripts: ``** PROBLEM Service Alert: host/service is STATE **``."""

from __future__ import annotations

import re

from bot.domain.alerts.common import Alert
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.icinga import service_alert

_NAGIOS = re.compile(
    r"\*\*\s*(?P<type>PROBLEM|RECOVERY|ACKNOWLEDGEMENT|FLAPPINGSTART|FLAPPINGSTOP|CUSTOM|DOWNTIMESTART|DOWNTIMEEND)"
    r"\s+Service Alert:\s*(?P<host>[^/\s]{1,255})/(?P<svc>[^\n]{1,200}?)\s+is\s+(?P<state>\w{1,20})\s*\*\*",
    re.I,
)


def parse_nagios(content: MessageContent) -> Alert | None:
    """Nagios's service notification; read like Icinga2's, which grew out of it."""
    match = _NAGIOS.search(content.text)
    return None if match is None else service_alert(content, match, "nagios")
