"""Persistence: engines and sessions, the schema and its migrations, and the audit log.

Use cases open one transaction from :func:`session_factory` and do all their reads and writes,
audit entries included, inside it; at start-up, :func:`upgrade` brings the schema to head.
"""

from bot.db.audit import VerifyResult, recent, record, verify
from bot.db.engine import NO_DATABASE, database_missing, deferred_engine, make_engine, session_factory
from bot.db.migrate import current, head, is_up_to_date, upgrade
from bot.db.models import GENESIS_HASH, AuditEvent, Base

__all__ = [
    "GENESIS_HASH",
    "NO_DATABASE",
    "AuditEvent",
    "Base",
    "VerifyResult",
    "current",
    "database_missing",
    "deferred_engine",
    "head",
    "is_up_to_date",
    "make_engine",
    "recent",
    "record",
    "session_factory",
    "upgrade",
    "verify",
]
