"""Slack's text conventions, both ways, without importing Slack.

Incoming text arrives HTML-escaped with links as ``<url|label>`` — and Slack
auto-links anything that looks like a host name, so ``/xen vifs web01.corp.lan``
arrives as ``<http://web01.corp.lan|web01.corp.lan>``. Outgoing text that came
from XAPI or a person must be escaped so a VM called ``<!channel>`` cannot ping
a whole channel.
"""

from __future__ import annotations

import re

_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
# Slack clients turn typed quotes into typographic ones; shlex only knows the plain kind.
_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"})


def unescape(text: str) -> str:
    """Slack markup → what the person typed or what the integration meant."""

    def _replace(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if label is not None:
            return label
        if target.startswith(("mailto:", "tel:")):
            return target.split(":", 1)[1]
        if target.startswith(("http://", "https://")):
            return target
        return match.group(0)  # <@U123>, <#C123>, <!here>: keep as they are

    text = _LINK.sub(_replace, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.translate(_SMART_QUOTES)


def escape(text: object) -> str:
    """Make outside text inert in mrkdwn: only ``&``, ``<`` and ``>`` need it, per Slack."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: object) -> str:
    """Inline code; backticks inside would end it early, so they are swapped for a look-alike."""
    return "`" + escape(text).replace("`", "\u02cb") + "`"
