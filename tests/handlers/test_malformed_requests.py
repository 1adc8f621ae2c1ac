"""Malformed requests: the signature is checked first, from the raw bytes, and every
malformed request is a 400 or 401 with one INFO line, never a 500 and a traceback."""

from __future__ import annotations

import logging

import pytest

from tests.slack.fixtures import SIGNING_SECRET
from tests.slack.signing import FORM_CONTENT_TYPE, JSON_CONTENT_TYPE, post_signed, slash_command

FORGED = "not-the-signing-secret"


def _send(bot, body: bytes, secret: str, content_type: str | None = None, **headers: str) -> int:
    status, _headers, _body = post_signed(bot.url, body, secret, content_type, extra_headers=headers or None)
    return status


def _problems(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


CASES = {
    "non-numeric timestamp": (slash_command("help"), None, {"X-Slack-Request-Timestamp": "soon"}),
    "non-UTF-8 body": (b"text=\xff\xfe&command=%2Fxen", FORM_CONTENT_TYPE, {}),
    "form sent as JSON": (slash_command("help"), JSON_CONTENT_TYPE, {}),
    "bad payload=": (b"payload=%7Bnot-json", FORM_CONTENT_TYPE, {}),
    "payload= not an object": (b"payload=%5B1%2C2%5D", FORM_CONTENT_TYPE, {}),
    "JSON that is not an object": (b"[1, 2]", JSON_CONTENT_TYPE, {}),
    "an action without an id": (b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%7B%7D%5D%7D",
                                FORM_CONTENT_TYPE, {}),
    "an event that is not an object": (b'{"type": "event_callback", "event": "x"}', JSON_CONTENT_TYPE, {}),
    "a user that is not an object": (b'{"type": "event_callback", "event": {}, "user": 3}', JSON_CONTENT_TYPE, {}),
}


@pytest.mark.parametrize("case", CASES)
def test_an_unsigned_malformed_request_is_401_with_one_info_line(bot, caplog, case):
    body, content_type, headers = CASES[case]
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert _send(bot, body, FORGED, content_type, **headers) == 401
    assert not _problems(caplog)
    assert len([r for r in caplog.records if r.name.startswith("handlers")]) == 1
    assert not bot.fake.calls("response_url")


@pytest.mark.parametrize("case", [c for c in CASES if c != "non-numeric timestamp"])
def test_a_signed_malformed_request_is_400_with_one_info_line(bot, caplog, case):
    body, content_type, headers = CASES[case]
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert _send(bot, body, SIGNING_SECRET, content_type, **headers) == 400
    assert not _problems(caplog)
    assert len([r for r in caplog.records if r.name.startswith("handlers")]) == 1


def test_a_missing_signature_is_401(bot, caplog):
    caplog.set_level(logging.INFO)
    assert _send(bot, slash_command("help"), SIGNING_SECRET, None, **{"X-Slack-Signature": ""}) == 401
    assert not _problems(caplog)
