"""Applies in child processes: they apply exactly like the serving process would, and a killed
child is replaced without restarting xenbot (its request is resumed by the housekeeper)."""

from __future__ import annotations

import os
import signal

from sqlalchemy import select

from bot.db.models import ChangeResult
from bot.domain.approvals import State
from bot.services.apply_process import ApplyProcesses
from bot.services.changes import Scope
from bot.services.messenger import NullMessenger
from bot.settings import Settings
from tests.services.test_apply import LEAD, request, stack, state


def null_messenger(_settings: Settings) -> NullMessenger:
    return NullMessenger()


def test_an_apply_process_applies_and_a_killed_one_is_replaced(sim, db_url):
    services, _ = stack(sim, db_url)
    processes = ApplyProcesses(services.settings, null_messenger, processes=1)
    try:
        first = request(services, Scope("vm", "win7-kiosk"), "tx")
        services.changes.approve(LEAD, first)
        assert processes.submit(first, LEAD).result(timeout=60) == State.APPLIED
        with services.sessions() as session:
            results = session.scalars(select(ChangeResult).where(ChangeResult.request_id == first)).all()
        assert [r.status for r in results] == ["applied"]

        for pid in list(processes._pool._processes or {}):  # the OOM killer, or an operator
            os.kill(pid, signal.SIGKILL)
        second = request(services, Scope("vm", "win2019-dc01"), "tx")
        services.changes.approve(LEAD, second)
        assert processes.submit(second, LEAD).result(timeout=60) == State.APPLIED
        assert state(services, second) == State.APPLIED
    finally:
        processes.close()
        services.close()
