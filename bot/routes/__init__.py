"""Command and button routes of each feature, plugged into the router by ``bot.wiring``."""

from __future__ import annotations

from collections.abc import Callable

from bot.render.blocks import Reply
from bot.render.changes import refusal
from bot.services.changes import ChangeError


def refused_on_change_error(run: Callable[[], Reply]) -> Reply:
    """A request that cannot be made as asked is answered privately with the reason."""
    try:
        return run()
    except ChangeError as exc:
        return refusal(str(exc))
