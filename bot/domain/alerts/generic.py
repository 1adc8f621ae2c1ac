"""Any other text about discards that names a target."""

from __future__ import annotations

from bot.domain.alerts.common import Alert
from bot.domain.alerts.content import MessageContent
from bot.domain.alerts.vocab import (
    _build,
    _figures,
    _status_from,
    _target,
    find_interface,
    find_ip,
    find_target,
)


def parse_generic(content: MessageContent) -> Alert | None:
    """Any other text about discards that names a target (VM, host, IP).

    A tool's message needs only that. A person's message also needs a figure:
    "seeing drops on web01?" is a question (and "drops" may be calls or
    sessions), while "web01 shows 1,520 discarded packets" reads as a report.
    """
    figures = _figures(content.text)
    no_figure = figures.rx is None and figures.tx is None and figures.value is None
    if no_figure and content.sender_kind == "person":
        return None
    named = content.field_value("VM", "Host", "Hostname", "Server", "Instance", "Device", "Target")
    target, target_ip = _target(named.split()[0] if named and named.split() else find_target(content.text))
    if not target:
        return None
    return _build(
        content,
        "generic",
        _status_from(content.text, content.color),
        target,
        name="discards",
        target_ip=target_ip or find_ip(content.text),
        interface=find_interface(content.text),
        figures=figures,
    )
