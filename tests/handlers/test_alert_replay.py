"""The tools' own notifications (tests/handlers/tool_corpus.py) replayed through ``xenbot serve --http``.

Each case runs against a fresh bot, the demo pool in the simulator and the fake
Slack; for every message the number of replies, what they say and the thread
they are in are asserted. A message that must get no reply is waited for by
its outcome in the log, never by sleeping.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.db.models import AlertRecord
from tests.handlers.harness import bot_settings, running_bot
from tests.handlers.tool_corpus import ALERTS, Case, all_cases
from tests.slack.fixtures import SIGNING_SECRET
from tests.slack.signing import event_callback_payload, post_signed

CASES = all_cases()


def test_the_corpus_is_large_enough():
    assert sum(len(c.steps) for c in CASES) >= 40


def wait_outcome(caplog: pytest.LogCaptureFixture, event_id: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    needle = f"alert channel message {event_id}: "
    while time.monotonic() < deadline:
        for record in list(caplog.records):
            message = record.getMessage()
            if message.startswith(needle):
                return message[len(needle):]
        time.sleep(0.02)
    raise AssertionError(f"no outcome logged for {event_id}")


def send(bot: Any, event: dict[str, Any], event_id: str, envelope: dict[str, Any]) -> None:
    payload = event_callback_payload(event, event_id=event_id)
    payload.update(envelope)
    body = json.dumps(payload, separators=(",", ":")).encode()
    status, _headers, _body = post_signed(bot.url, body, SIGNING_SECRET)
    assert status == 200


def message_ts(event: dict[str, Any]) -> str:
    inner = event.get("message") if event.get("subtype") == "message_changed" else event
    return str(inner["ts"])


def text_of(message: dict[str, Any]) -> str:
    return str(message.get("text")) + json.dumps(message.get("blocks"), ensure_ascii=False)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tool_notifications_get_one_right_answer(case: Case, sim, fake_slack, db_url, caplog):
    caplog.set_level(logging.INFO, logger="handlers.events")
    settings = bot_settings({"demo": sim}, fake_slack, db_url, alert_channels=[ALERTS])
    with running_bot(settings, fake_slack) as bot:
        posted_before = 0
        seen: dict[str, str] = {}
        for index, step in enumerate(case.steps):
            if case.stale == step.name:
                with bot.services.sessions.begin() as session:
                    for record in session.scalars(select(AlertRecord)):
                        record.last_seen = record.last_seen - timedelta(days=2)
            event_id = f"Ev{abs(hash((case.name, index))) % 10**9:09d}"
            send(bot, step.event, event_id, step.envelope)
            outcome = wait_outcome(caplog, event_id)
            seen[step.name] = message_ts(step.event)
            calls = [c for c in bot.fake.calls("chat.postMessage") if c.status is not None]
            replies = [c.args for c in calls[posted_before:]]
            posted_before = len(calls)
            where = f"{case.name} / {step.name} ({outcome})"
            assert len(replies) == step.replies, f"{where}: {[text_of(r)[:300] for r in replies]}"
            text = "\n".join(text_of(r) for r in replies)
            for phrase in step.says:
                assert phrase in text, f"{where}: {phrase!r} not in {text[:1500]}"
            for phrase in step.never:
                assert phrase not in text, f"{where}: {phrase!r} in {text[:1500]}"
            thread = seen[step.thread] if step.thread else seen[step.name]
            for reply in replies:
                assert reply.get("channel") == ALERTS and reply.get("thread_ts") == thread, where
