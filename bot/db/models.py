"""ORM models. The schema itself is owned by the Alembic migrations; these must match them.

``tests/db/test_migrations.py`` compares the two with Alembic's autogenerate, so a column added
here without a migration (or the reverse) fails the build instead of a deployment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: Alembic can only alter or drop a constraint it can name, and
# SQLite's batch mode (copy-and-rename of the table) needs names to carry constraints across.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# prev_hash of the first row of the chain.
GENESIS_HASH: Final = "0" * 64


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC ``datetime`` in Python, on both databases.

    SQLite has no time zones: ``DateTime(timezone=True)`` silently stores the wall-clock time and
    returns a naive value. The audit hash covers the ISO form of ``at``, so the value read back
    must be exactly the one hashed; normalising to UTC on the way in and out guarantees that.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime (datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL: indexable and compact; SQLite stores JSON as text.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def canonical_json(value: Any) -> str:
    """The one JSON spelling the audit hash is computed over: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def chain_hash(
    prev_hash: str,
    *,
    id: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    channel: str | None,
    request_id: str | None,
    details: Any,
    key: bytes | None = None,
) -> str:
    """``sha256(prev_hash + canonical JSON of the row)``, hex; ``HMAC-SHA256`` under ``key`` when given.

    Including ``prev_hash`` links each row to all rows before it, so altering or removing any row
    breaks every hash after it; including ``id`` makes a removed row show as a gap. Without a
    key, anyone who can write the table can also recompute every later hash; with the key (kept
    outside the database, ``[audit] key_file``) they cannot.
    """
    payload = canonical_json(
        {
            "id": id,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "target": target,
            "channel": channel,
            "request_id": request_id,
            "details": details,
        }
    )
    message = (prev_hash + payload).encode("utf-8")
    if key is not None:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """Names a chain key without revealing it: tells "wrong key" apart from "tampered row"."""
    return hmac.new(key, b"xenbot audit chain key", hashlib.sha256).hexdigest()[:16]


class AuditEvent(Base):
    """One entry of the append-only, hash-chained audit log.

    Rows are written only by :func:`bot.db.audit.record`, which assigns ``id`` itself (previous id
    + 1, under the chain lock) rather than from a sequence: a PostgreSQL sequence loses values on
    rollback, and gaps must mean "a row was deleted", not "a transaction failed". The database
    refuses UPDATE and DELETE (triggers in the migration), and ``prev_hash`` is unique so that two
    writers that somehow computed the same predecessor cannot fork the chain: the second insert
    fails instead.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index(None, "action"),
        Index(None, "request_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Slack user id, or "system", "policy:<id>", "cli:<unix user>".
    actor: Mapped[str] = mapped_column(String(128))
    # Dotted verb such as "command.refused" or "change.approved"; recent() filters on a prefix.
    action: Mapped[str] = mapped_column(String(64))
    # What the event is about: pool, VM, VIF or request id. Free text, for people to read.
    target: Mapped[str] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(32))
    # Short correlation id tying the events of one Slack interaction together.
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))

    def compute_hash(self, key: bytes | None = None) -> str:
        """The hash this row should have given its contents and ``prev_hash`` (and the chain key)."""
        return chain_hash(
            self.prev_hash,
            id=self.id,
            at=self.at,
            actor=self.actor,
            action=self.action,
            target=self.target,
            channel=self.channel,
            request_id=self.request_id,
            details=self.details,
            key=key,
        )

    def __repr__(self) -> str:
        return f"AuditEvent(id={self.id}, at={self.at.isoformat()}, actor={self.actor!r}, action={self.action!r})"


class AuditChainKey(Base):
    """Where the keyed (HMAC) part of the audit chain starts, and which key it uses.

    Rows with ``id < first_id`` were written before a key was configured and are checked as
    the old unkeyed chain; the first keyed row's HMAC covers the last unkeyed row's hash, so
    that older part cannot be rewritten either. One row, written once (append-only, like the
    log): ``key_id`` is :func:`key_fingerprint` of the key, never the key.
    """

    __tablename__ = "audit_chain_key"

    first_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key_id: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChangeRequest(Base):
    """An offload change, revert or activation, from request to outcome.

    ``state`` only moves through compare-and-set updates (see ``bot.services.changes``); ``plan``
    holds exactly what the approver saw and ``plan_hash`` identifies it, so the plan recomputed
    just before applying can be compared with what was approved.
    """

    __tablename__ = "change_request"
    __table_args__ = (Index(None, "state"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # offload | revert | activate
    state: Mapped[str] = mapped_column(String(24))
    action: Mapped[str] = mapped_column(String(16))  # off | on | reset | restore | activate
    pool: Mapped[str] = mapped_column(String(64))
    scope_kind: Mapped[str] = mapped_column(String(8))
    scope_label: Mapped[str] = mapped_column(Text)
    modes: Mapped[list[str]] = mapped_column(JSONDocument)
    reason: Mapped[str | None] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(32))
    message_channel: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    plan: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    plan_hash: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("change_request.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The replica applying it and when it last showed signs of life; a stale heartbeat lets
    # another replica (or this one after a restart) finish the job.
    executor: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    # When the outcome was posted; empty while Slack could not take it (the housekeeper retries).
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Tries to apply (or finish) it that did not reach an end: the pool not answering, a target
    # gone, a bug. At ``[slack] apply_attempts`` the request fails, so recovery never loops forever.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ChangeApproval(Base):
    """One approver's approval; the unique pair makes a double click count once."""

    __tablename__ = "change_approval"
    __table_args__ = (UniqueConstraint("request_id", "approver"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(Integer, ForeignKey("change_request.id"))
    approver: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChangeResult(Base):
    """What happened to one interface: exact before values, values read back after, error."""

    __tablename__ = "change_result"
    __table_args__ = (UniqueConstraint("request_id", "interface_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(Integer, ForeignKey("change_request.id"))
    pool: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(4))
    interface_uuid: Mapped[str] = mapped_column(String(36))
    label: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24))
    before: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    error: Mapped[str | None] = mapped_column(Text)
    activation: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class PendingActivation(Base):
    """An interface whose configured offload setting is not in effect yet (dom0 applies on plug)."""

    __tablename__ = "pending_activation"

    interface_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    pool: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(4))
    label: Mapped[str] = mapped_column(Text)
    owner_uuid: Mapped[str] = mapped_column(String(36))  # the VM (for a VIF) or host (for a PIF)
    method: Mapped[str] = mapped_column(String(24))
    request_id: Mapped[int] = mapped_column(Integer, ForeignKey("change_request.id"))
    since: Mapped[datetime] = mapped_column(UTCDateTime())


class Policy(Base):
    """A standing offload decision for a pool (see ``bot.domain.policy.PolicySpec``)."""

    __tablename__ = "policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    active: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str] = mapped_column(String(64))
    approvers: Mapped[list[str]] = mapped_column(JSONDocument)
    request_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("change_request.id"))
    report_channel: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WatcherLease(Base):
    """Which replica watches a pool's events; taken over when the holder stops renewing it."""

    __tablename__ = "watcher_lease"

    pool: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DriftReport(Base):
    """Drift already reported, so the same drift is reported once, not at every event."""

    __tablename__ = "drift_report"

    policy_id: Mapped[int] = mapped_column(Integer, ForeignKey("policy.id"), primary_key=True)
    interface_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    signature: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertRecord(Base):
    """One discard alert (by identity per channel): how it was read, what it is about, the verdict."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("channel", "identity"), Index(None, "first_seen"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    identity: Mapped[str] = mapped_column(String(255))
    thread_ts: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    pool: Mapped[str | None] = mapped_column(String(64))
    vm_uuid: Mapped[str | None] = mapped_column(String(36))
    vm_name: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[str | None] = mapped_column(String(16))
    parsed: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    diagnosis: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    repeats: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertDelivery(Base):
    """Each Slack event carrying an alert, once: the unique event id stops retries and replicas."""

    __tablename__ = "alert_delivery"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("alert.id"))
    kind: Mapped[str] = mapped_column(String(16))  # new | repeat | resolved | edit | muted | unresolved
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertMute(Base):
    """Discard alerts for a VM muted until a time, by someone."""

    __tablename__ = "alert_mute"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool: Mapped[str] = mapped_column(String(64))
    vm_uuid: Mapped[str] = mapped_column(String(36))
    vm_name: Mapped[str] = mapped_column(Text)
    muted_by: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class SlackDelivery(Base):
    """A slash command or click Slack delivered (by ``trigger_id``), claimed once across replicas.

    A signed request replayed within the signature's five minutes, or delivered twice, finds
    its key taken and is dropped; the housekeeper deletes rows past the replay window."""

    __tablename__ = "slack_delivery"
    __table_args__ = (Index(None, "at"),)

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
