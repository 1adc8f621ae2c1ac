from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.handlers.harness import APPROVALS, LEAD, REQUESTER, RunningBot, bot_settings, running_bot


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'xenbot.db'}"


@pytest.fixture
def bot(sim, fake_slack, database_url) -> Iterator[RunningBot]:
    with running_bot(bot_settings({"demo": sim}, fake_slack, database_url), fake_slack) as running:
        yield running


@pytest.fixture
def change_bot(sim, fake_slack, db_url):
    settings = bot_settings(
        {"demo": sim}, fake_slack, db_url, approvers=[LEAD, REQUESTER], approvals_channel=APPROVALS
    )
    with running_bot(settings, fake_slack) as bot:
        yield bot
