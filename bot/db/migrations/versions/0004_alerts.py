"""alert, alert_delivery, alert_mute: discard alerts, their deliveries and mutes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("identity", sa.String(length=255), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=True),
        sa.Column("vm_uuid", sa.String(length=36), nullable=True),
        sa.Column("vm_name", sa.Text(), nullable=True),
        sa.Column("verdict", sa.String(length=64), nullable=True),
        sa.Column("confidence", sa.String(length=16), nullable=True),
        sa.Column("parsed", JSON, nullable=False),
        sa.Column("diagnosis", JSON, nullable=True),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("first_seen", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint("channel", "identity", name=op.f("uq_alert_channel")),
    )
    op.create_index(op.f("ix_alert_first_seen"), "alert", ["first_seen"])
    op.create_table(
        "alert_delivery",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"], name=op.f("fk_alert_delivery_alert_id_alert")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_alert_delivery")),
    )
    op.create_table(
        "alert_mute",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("vm_uuid", sa.String(length=36), nullable=False),
        sa.Column("vm_name", sa.Text(), nullable=False),
        sa.Column("muted_by", sa.String(length=64), nullable=False),
        sa.Column("until", WHEN, nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_mute")),
    )


def downgrade() -> None:
    op.drop_table("alert_mute")
    op.drop_table("alert_delivery")
    op.drop_index(op.f("ix_alert_first_seen"), table_name="alert")
    op.drop_table("alert")
