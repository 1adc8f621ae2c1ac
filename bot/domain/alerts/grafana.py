"""Grafana alerting's Slack contact point (``alerting/receivers/slack`` with ``templates/default_template.go``).

Grafana's notifications are Alertmanager's in shape: the same ``[FIRING:n]``
subject (plus ``, RESOLVED:n``), then a text listing each alert's ``Value:``,
``Labels:`` and ``Annotations:``. They are told apart by the footer Grafana
always sets ("Grafana v11.2.0"), the default username "Grafana", or the
``**Firing**`` heading of the default message, and labelled as Grafana's.
"""

from __future__ import annotations

import re

from bot.domain.alerts.alertmanager import read_grouped
from bot.domain.alerts.common import Alert
from bot.domain.alerts.content import MessageContent

_DEFAULT_BODY = re.compile(r"^\*\*(?:Firing|Resolved)\*\*\s*$", re.M)


def is_grafana(content: MessageContent) -> bool:
    return (
        content.footer.lower().startswith("grafana")
        or content.sender.lower().startswith("grafana")
        or bool(_DEFAULT_BODY.search(content.text))
    )


def parse_grafana(content: MessageContent) -> Alert | None:
    return read_grouped(content, "grafana") if is_grafana(content) else None
