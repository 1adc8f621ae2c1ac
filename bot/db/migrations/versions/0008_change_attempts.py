"""change_request.attempts: how many tries to apply or finish a change did not reach an end.

Recovery retried an approved change whose target had vanished every 30 seconds, forever;
counting the failed tries in the database (shared by every replica, kept across restarts)
lets xenbot fail the request, with the reason, after ``[slack] apply_attempts`` of them.
Existing requests start at 0.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "change_request", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("change_request") as batch:
        batch.drop_column("attempts")
