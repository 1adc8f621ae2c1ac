"""policy, watcher_lease, drift_report: offload policies that hold.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "policy",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("approvers", JSON, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("report_channel", sa.String(length=32), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("removed_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["change_request.id"], name=op.f("fk_policy_request_id_change_request")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy")),
    )
    op.create_table(
        "watcher_lease",
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("pool", name=op.f("pk_watcher_lease")),
    )
    op.create_table(
        "drift_report",
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("interface_uuid", sa.String(length=36), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("reported_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["policy_id"], ["policy.id"], name=op.f("fk_drift_report_policy_id_policy")),
        sa.PrimaryKeyConstraint("policy_id", "interface_uuid", name=op.f("pk_drift_report")),
    )


def downgrade() -> None:
    op.drop_table("drift_report")
    op.drop_table("watcher_lease")
    op.drop_table("policy")
