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


def test_housekeeping_anchors_the_audit_log_outside_the_database(sim, db_url, caplog):
    """The head (hash:count) goes to the audit channel and the log: at start, when it moved, at shutdown."""
    import logging

    from bot.db import audit

    services, messenger = stack(sim, db_url)
    try:
        keeper = Housekeeper(services.changes, services.apply, anchor_channel="C0AUDIT", anchor_interval=3600)
        with caplog.at_level(logging.INFO, logger="bot.services.housekeeping"):
            keeper.run_once()
            assert messenger.posts == []  # an empty log has no head to anchor
            request(services, Scope("vm", "win7-kiosk"))
            keeper.run_once()  # not due yet: anchoring is every anchor_interval...
            assert [c for c, _r, _t in messenger.posts] == ["C0APPROVE"]
            keeper.stop()  # ...and at shutdown
        with services.sessions() as session:
            head = audit.head(session)
        assert head is not None and head.count >= 1
        anchors = [r.text for c, r, _t in messenger.posts if c == "C0AUDIT"]
        assert len(anchors) == 1 and str(head) in anchors[0]
        assert any(getattr(r, "audit_anchor", None) == str(head) for r in caplog.records)
        keeper.stop()  # nothing new: not posted again
        assert len([c for c, _r, _t in messenger.posts if c == "C0AUDIT"]) == 1
    finally:
        services.close()
