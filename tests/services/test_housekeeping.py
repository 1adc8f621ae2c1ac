from datetime import UTC, datetime, timedelta

from bot.domain.approvals import State
from bot.services.changes import Scope
from bot.services.housekeeping import Housekeeper
from tests.services.test_apply import LEAD, request, stack, state


def test_housekeeping_expires_and_resumes(sim, db_url):
    services, _ = stack(sim, db_url, approval_ttl_minutes=1)
    try:
        stale = request(services, Scope("vm", "win7-kiosk"))
        approved = request(services, Scope("vm", "win2003-legacy"))
        services.changes.approve(LEAD, approved)  # approved, then "crash" before applying
        later = datetime.now(UTC) + timedelta(minutes=5)
        services.changes.clock = lambda: later
        services.apply.clock = lambda: later
        Housekeeper(services.changes, services.apply).run_once()
        assert state(services, stale) == State.EXPIRED
        assert state(services, approved) == State.APPLIED
    finally:
        services.close()
