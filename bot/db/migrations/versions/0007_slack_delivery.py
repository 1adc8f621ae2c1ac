"""slack_delivery: slash commands and clicks claimed once by trigger_id, across replicas.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_delivery",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_delivery")),
    )
    op.create_index(op.f("ix_slack_delivery_at"), "slack_delivery", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_slack_delivery_at"), table_name="slack_delivery")
    op.drop_table("slack_delivery")
