"""Monitoring alerts about NIC discards, read from Slack messages.

xenbot answers discard alerts in the alert channel's thread, so it first has to
recognise one. Every monitoring tool posts differently — an attachment with a
title and fields (Alertmanager, Zabbix, LibreNMS, Datadog), plain text with
links (Icinga2, Nagios, PRTG), Block Kit from newer apps — and Slack hands the
text over escaped, with host names turned into ``<url|label>`` links. This
package flattens a message event into :class:`MessageContent` (``content``), then
tries one small parser per tool (one module each), then a cautious generic reader
(``generic``); ``common`` holds the parsed :class:`Alert` and its identity,
``vocab`` the words, figures and targets all parsers read. ``intake`` decides
who may raise an alert and what a channel's audience may see; ``webhook`` reads
Alertmanager's and Grafana's JSON notifications into the same alerts.

Three promises matter more than coverage:

* :func:`parse_alert` never raises. It runs on every message of a busy
  channel, including edits, joins and whatever a person pastes; a crash there
  would take the listener down for one odd message.
* It answers ``None`` unless the message is about discards or dropped packets.
  A CPU or disk alert must not get a discard diagnosis, and a figure is only
  read where the text ties it to a direction or a packet unit — a threshold or
  a port number is never reported as the measured value. (``any_topic=True`` relaxes
  the discard test for notices that may only close or update a known alert.)
* :attr:`Alert.identity` is the same for the firing, the resolved and the
  edited version of one alert (Zabbix resolves by editing the original
  message), so the bot can find its earlier reply instead of answering twice.
* xenbot's own replies (any install: their blocks carry ``xenbot`` ids) are never alerts.

Pure: no Slack, XAPI or database imports; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bot.domain.alerts.alertmanager import parse_alertmanager
from bot.domain.alerts.common import SOURCES, Alert, Direction, SenderKind, Source, Status, make_identity
from bot.domain.alerts.content import AttachmentContent, MessageContent, message_text
from bot.domain.alerts.datadog import parse_datadog
from bot.domain.alerts.generic import parse_generic
from bot.domain.alerts.grafana import parse_grafana
from bot.domain.alerts.icinga import parse_icinga
from bot.domain.alerts.librenms import parse_librenms
from bot.domain.alerts.nagios import parse_nagios
from bot.domain.alerts.prtg import parse_prtg
from bot.domain.alerts.vocab import (
    directions_in,
    extract_figures,
    find_interface,
    find_ip,
    find_target,
    mentions_discards,
)
from bot.domain.alerts.zabbix import parse_zabbix

__all__ = [
    "PARSERS",
    "SOURCES",
    "Alert",
    "AttachmentContent",
    "Direction",
    "MessageContent",
    "Parser",
    "SenderKind",
    "Source",
    "Status",
    "directions_in",
    "extract_figures",
    "find_interface",
    "find_ip",
    "find_target",
    "make_identity",
    "mentions_discards",
    "message_text",
    "parse_alert",
    "parse_grafana",
    "parse_icinga",
    "parse_nagios",
]

Parser = Callable[[MessageContent], Alert | None]

PARSERS: Final[tuple[Parser, ...]] = (
    parse_grafana,
    parse_alertmanager,
    parse_zabbix,
    parse_librenms,
    parse_icinga,
    parse_nagios,
    parse_prtg,
    parse_datadog,
    parse_generic,
)


def parse_alert(event_or_content: object, *, any_topic: bool = False) -> Alert | None:
    """A discard alert from a Slack message event (or already-flattened content), else ``None``; never raises.

    ``any_topic`` reads a tool's notification even when it does not mention
    discards (PRTG's "Up" notice names only the sensor; an Alertmanager
    ``[RESOLVED]`` may carry no text): the caller must only use such an alert
    to follow up one it already knows by identity. The generic reader is never
    used then, and never for xenbot's own replies.
    """
    try:
        content = event_or_content if isinstance(event_or_content, MessageContent) else message_text(event_or_content)
        if not content.text or content.xenbot:
            return None
        if any_topic:
            for parser in PARSERS[:-1]:
                alert = parser(content)
                if alert is not None:
                    return alert
            return None
        if not mentions_discards(content.text):
            return None
        for parser in PARSERS:
            alert = parser(content)
            if alert is not None:
                return alert
        return None
    except Exception:  # noqa: BLE001 - a listener on a busy channel must survive any one message; None is the honest answer
        return None
