"""Slack deliveries claimed once in the database, so a replay or a second replica finds them taken.

Slack gives every slash command and click its own ``trigger_id``; a signed request can be
replayed for as long as its signature is fresh (five minutes), and two replicas behind a
balancer each remember only what they saw. The primary key decides: the first insert wins.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.db.models import SlackDelivery

# Longer than the signature's five minutes and Slack's retries, so a replay always finds its row.
KEEP = timedelta(minutes=15)


def claim(sessions: sessionmaker[Session], key: str, now: datetime) -> bool:
    """True for the first delivery of ``key``; False when it was claimed before."""
    try:
        with sessions.begin() as session:
            session.add(SlackDelivery(key=key[:128], at=now))
    except IntegrityError:
        return False
    return True


def forget(sessions: sessionmaker[Session], now: datetime, keep: timedelta = KEEP) -> int:
    """Delete claims older than ``keep``; returns how many."""
    with sessions.begin() as session:
        result = session.execute(delete(SlackDelivery).where(SlackDelivery.at < now - keep))
        return int(result.rowcount)  # type: ignore[attr-defined]
