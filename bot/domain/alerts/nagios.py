"""Nagios's Slack notification scripts: ``** PROBLEM Service Alert: host/service is STATE **``."""

from __future__ import annotations

import re

from bot.domain.alerts.common import Alert, is_good_color
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.icinga import service_alert

_NAGIOS = re.compile(
    r"\*\*\s*(?P<type>PROBLEM|RECOVERY|ACKNOWLEDGEMENT|FLAPPINGSTART|FLAPPINGSTOP|CUSTOM|DOWNTIMESTART|DOWNTIMEEND)"
    r"\s+Service Alert:\s*(?P<host>[^/\s]{1,255})/(?P<svc>[^\n]{1,200}?)\s+is\s+(?P<state>\w{1,20})\s*\*\*",
    re.I,
)


# The widespread incoming-webhook script (nagios.sh): "<emoji> HOST: h   SERVICE: s   MESSAGE: output <url|See Nagios>".
# It has no state word: the state is only in the emoji it picks from $NAGIOS_SERVICESTATE.
_WEBHOOK = re.compile(
    r"(?P<emoji>:[a-z0-9_+\-]{1,40}:)?\s*HOST:\s*(?P<host>\S{1,255})\s+SERVICE:\s*(?P<svc>[^\n]{1,200}?)\s+"
    r"MESSAGE:\s*(?P<out>[^\n]*)",
    re.I,
)
_OK_EMOJI = frozenset({":white_check_mark:", ":heavy_check_mark:", ":beer:", ":large_green_circle:", ":ok:",
                       ":green_heart:", ":sunny:"})  # fmt: skip


def parse_nagios(content: MessageContent) -> Alert | None:
    """Nagios's service notification; read like Icinga2's, which grew out of it."""
    match = _NAGIOS.search(content.text)
    if match is not None:
        return service_alert(content, match, "nagios")
    hook = _WEBHOOK.search(content.text)
    if hook is None:
        return None
    emoji = (hook.group("emoji") or "").lower()
    state = "OK" if emoji in _OK_EMOJI or is_good_color(content.color) else "CRITICAL"
    return service_alert(content, hook, "nagios", state=state, plugin=hook.group("out"))
