"""The fixed costs of an apply (issue 17, item 3): outcomes are counted, not loaded.

``_close`` and ``_report`` each loaded every result row of the request through the ORM to
count them (0.27 s for a 3,030-interface apply); they now ask the database for one
``GROUP BY``, and for the failed rows only when there are some.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from bot.domain.approvals import State
from bot.services.changes import Scope
from bot.wiring import Services
from tests.services.test_apply import LEAD, request, stack


@pytest.fixture
def services(sim: Any, db_url: str) -> Iterator[Services]:
    built, messenger = stack(sim, db_url)
    built.recorder = messenger  # type: ignore[attr-defined]
    yield built
    built.close()


def test_finishing_an_apply_counts_outcomes_without_loading_the_rows(sim, services):
    request_id = request(services, Scope("pool", "demo"))
    services.changes.approve(LEAD, request_id)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(services.engine, "before_cursor_execute", seen)
    try:
        assert services.apply.execute(request_id, LEAD) == State.APPLIED
    finally:
        event.remove(services.engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.startswith("SELECT") and "FROM change_result" in s]
    assert not [s for s in reads if "change_result.before" in s], "result rows were loaded whole"
    grouped = [s for s in reads if "GROUP BY" in s]
    assert len(grouped) == 2  # once to close the request, once for its summary
    summary = str(services.recorder.posts[-1][1].blocks)
    assert "changed and verified" in summary


def test_failures_are_still_listed_in_the_summary(sim, services):
    request_id = request(services, Scope("pool", "demo"))
    sim.faults.fail("VIF.add_to_other_config", "INTERNAL_ERROR", ["disk full"], share=0.5, seed=3)
    services.changes.approve(LEAD, request_id)
    assert services.apply.execute(request_id, LEAD) == State.PARTIALLY_FAILED
    summary = str(services.recorder.posts[-1][1].blocks)
    assert "INTERNAL_ERROR" in summary
