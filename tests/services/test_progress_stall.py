"""A rate-limited Slack cannot stall an apply (issue 17, item 4).

Progress used to be a ``chat.update`` on the thread that stores results, and slack_sdk sleeps
out a 429's ``Retry-After`` on the calling thread: one 35 s stall left 745 of 3,030 interfaces
unwritten. Here the fake Slack answers every ``chat.update`` with 429 (and ``Retry-After``
counting down, as Slack does) for longer than the progress sender's patience, during a
pool-wide apply through the real SlackMessenger. The writes and their results must go on
regardless: every interface written once, the request finished *while Slack still refuses*,
and the final card drawn once Slack takes it again.
"""

from __future__ import annotations

import threading
import time

from pydantic import SecretStr
from sqlalchemy import func, select

from bot.db.models import ChangeRequest, ChangeResult
from bot.domain.approvals import State
from bot.services.changes import Scope
from bot.services.progress import sender_for
from bot.settings import Settings, SlackSettings
from bot.wiring import build
from bot.xen.sim import Simulator
from handlers.client import web_client
from handlers.messenger import PROGRESS_TIMEOUT_SECONDS, SlackMessenger
from tests.conftest_xen import pool_settings
from tests.handlers.harness import message_text
from tests.slack.fake_slack import FakeSlack
from tests.slack.fixtures import BOT_TOKEN

LEAD = "U0LEAD"
APPROVALS = "C0APPROVE"
# Slack held chat.update for 60 s in the issue; this is shorter to bound the test's time, but
# longer than anything the progress path may wait for (its client's time-out), and longer
# than the whole apply takes here.
HOLD_SECONDS = max(4 * PROGRESS_TIMEOUT_SECONDS, 20.0)


def test_a_rate_limited_slack_does_not_stall_a_pool_wide_apply(db_url: str, fake_slack: FakeSlack) -> None:
    with Simulator.start(fixture="scale:150", task_delay_ms=2, event_batch_ms=5, seed=5) as sim:
        settings = Settings(
            pools=[pool_settings(sim)],
            slack=SlackSettings(
                bot_token=SecretStr(BOT_TOKEN), api_url=fake_slack.base_url, approvers=[LEAD],
                approvals_channel=APPROVALS,
            ),
        ).model_copy(update={"database_url": db_url})
        messenger = SlackMessenger(web_client(settings))
        services = build(settings, messenger=messenger)
        try:
            services.changes.request(
                requester="U123", channel="C123", action="off", scope=Scope("pool", "demo"), modes_text=None,
                reason="stall test",
            )
            with services.sessions() as session:
                request = session.scalars(select(ChangeRequest).order_by(ChangeRequest.id.desc())).first()
            assert request is not None and request.message_ts
            writes = sum(len(i["changes"]) for i in request.plan["interfaces"])
            interfaces = len(request.plan["interfaces"])
            assert interfaces > 300
            services.changes.approve(LEAD, request.id)
            sim.reset_call_counts()

            fake_slack.rate_limit("chat.update", HOLD_SECONDS)
            held_until = time.monotonic() + HOLD_SECONDS
            outcome: list[object] = []
            runner = threading.Thread(target=lambda: outcome.append(services.apply.execute(request.id, LEAD)))
            runner.start()

            # Finished, with every result stored, while Slack still answers 429 to every update.
            deadline = held_until - 2.0
            while _state(services, request.id) != State.APPLIED:
                assert time.monotonic() < deadline, "the apply waited for Slack"
                time.sleep(0.05)
            assert time.monotonic() < held_until
            with services.sessions() as session:
                stored = session.scalar(
                    select(func.count()).select_from(ChangeResult).where(ChangeResult.request_id == request.id)
                )
            assert stored == interfaces
            calls = sim.call_counts()
            assert calls.get("VIF.add_to_other_config", 0) + calls.get("PIF.add_to_other_config", 0) == writes

            # The final card lands once Slack takes updates again, and nothing overwrites it.
            runner.join(HOLD_SECONDS + 30)
            assert not runner.is_alive() and outcome == [State.APPLIED]
            card = fake_slack.message(APPROVALS, request.message_ts)
            assert card is not None
            text = message_text(card)
            assert "applied" in text and "applying —" not in text
            limited = [c for c in fake_slack.calls("chat.update") if c.status == 429]
            assert limited, "Slack was never asked during the hold"
            sender = sender_for(messenger)
            assert sender.sent == 0 and sender.limited >= 1  # progress was held back, never waited for
        finally:
            services.close()


def _state(services: object, request_id: int) -> str | None:
    with services.sessions() as session:  # type: ignore[attr-defined]
        row = session.get(ChangeRequest, request_id)
        return None if row is None else row.state
