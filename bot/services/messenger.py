"""Where use cases post their messages, without knowing Slack.

Approval requests, progress and summaries are posted by the services
themselves (they outlive the click that started them). Slack implements this
port in ``handlers/messenger.py``; the console prints; tests may record.
"""

from __future__ import annotations

from typing import Protocol

from bot.render.blocks import Reply


class Messenger(Protocol):
    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str | None:
        """Post a message (or a thread reply); returns its ts when the transport has one."""

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        """Replace a message posted earlier (progress, final state, dead buttons)."""


class NullMessenger:
    """For contexts with nowhere to post (one-shot CLI commands)."""

    def post(self, channel: str, reply: Reply, thread_ts: str | None = None) -> str | None:
        return None

    def update(self, channel: str, ts: str, reply: Reply) -> None:
        return None
