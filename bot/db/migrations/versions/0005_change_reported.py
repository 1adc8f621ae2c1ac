"""change_request.reported_at: when the outcome of an applied change was posted to Slack.

A change that finishes while Slack is unreachable keeps it empty, and the housekeeper posts
the summary once Slack answers. Changes finished before this revision count as reported.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("change_request", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE change_request SET reported_at = updated_at "
        "WHERE state IN ('applied', 'partially_failed', 'failed')"
    )


def downgrade() -> None:
    with op.batch_alter_table("change_request") as batch:
        batch.drop_column("reported_at")
