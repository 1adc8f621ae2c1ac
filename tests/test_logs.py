"""Log lines that tell an operator nothing are not written (bot/logs.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot import logs


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """``logs.configure`` as ``serve`` calls it, its JSON lines read back."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("INFO", json_output=True)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_alembic_bolt_and_uvicorn_noise_is_left_out(json_lines, tmp_path, monkeypatch) -> None:
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.db import current, make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        upgrade(engine)
        for _ in range(3):  # what /readyz does on every probe
            current(engine)
    finally:
        engine.dispose()
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-the-environment")  # as deployed
    App(client=WebClient(token="xoxb-1"), signing_secret="s", token_verification_enabled=False)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42,
                                            extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    lines = json_lines()
    messages = [line["message"] for line in lines]
    assert not [m for m in messages if m.startswith(("Context impl", "Will assume", "setup plugin"))], messages
    assert not [m for m in messages if "token` will be unused" in m], messages
    assert any(m.startswith("Running upgrade") for m in messages), messages  # what migrations do is still said
    started = [line for line in lines if line["message"] == "Started server process [42]"]
    assert started and "color_message" not in started[0]
