"""The Home refresher's promises: many changes cost one ``views.publish``, an unchanged tab costs
none, and never more than the per-minute budget (``views.publish`` is Tier 4: 100+ a minute per
workspace) — the rest waits, nothing is dropped. Against the real fake Slack over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from handlers.client import web_client
from handlers.home import HomeTab, MinuteBudget, home_service
from tests.handlers.harness import RunningBot, bot_settings, running_bot


@pytest.fixture
def bot(sim, fake_slack, database_url) -> Iterator[RunningBot]:
    with running_bot(bot_settings({"demo": sim}, fake_slack, database_url), fake_slack) as running:
        yield running


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def publishes(bot: RunningBot, user: str | None = None) -> int:
    return len([c for c in bot.fake.calls("views.publish") if user is None or c.args.get("user_id") == user])


def test_minute_budget_is_a_sliding_window():
    clock = Clock()
    budget = MinuteBudget(3, clock)
    for _ in range(3):
        assert budget.wait_time() == 0
        budget.spend()
    assert budget.wait_time() == pytest.approx(60.0)
    clock.now += 59.5
    assert budget.wait_time() == pytest.approx(0.5)
    clock.now += 0.5
    assert budget.wait_time() == 0


def test_refresher_coalesces_and_keeps_to_the_budget(bot):
    clock = Clock()
    tab = HomeTab(home_service(bot.services), web_client(bot.services.settings), poll_seconds=3600,
                  budget=MinuteBudget(5, clock))
    try:
        # Twenty marks of one unchanged tab while the first is being published: at most two publishes.
        for _ in range(20):
            tab.mark("U1")
        tab.mark("U0SENTINEL", force=True)  # handled after U1's (first in, first out)
        bot.fake.wait_for("views.publish", predicate=lambda c: c.args.get("user_id") == "U0SENTINEL", timeout=10)
        assert 1 <= publishes(bot, "U1") <= 2
        # Unchanged: marking again publishes nothing.
        tab.mark("U1")
        tab.mark("U0SENTINEL", force=True)
        bot.fake.wait_for("views.publish", count=2, predicate=lambda c: c.args.get("user_id") == "U0SENTINEL",
                          timeout=10)
        assert publishes(bot, "U1") <= 2
        spent = publishes(bot)
        # Ten more people than the budget allows: only what is left of the 5 a minute goes out.
        for n in range(10):
            tab.mark(f"U2{n:02d}", force=True)
        bot.fake.wait_for("views.publish", count=5, timeout=10)
        with tab._cond:
            waiting = len(tab._dirty)
        assert publishes(bot) == 5 and waiting == 10 - (5 - spent)
        # A minute later the rest goes out; nobody was dropped.
        clock.now += 61
        tab.mark("U200", force=True)  # wakes the refresher
        bot.fake.wait_for("views.publish", count=5 + min(5, waiting), timeout=10)
        assert publishes(bot) <= 10
    finally:
        tab.stop()
