"""change_request, change_approval, change_result, pending_activation: offload changes behind approvals.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "change_request",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("scope_kind", sa.String(length=8), nullable=False),
        sa.Column("scope_label", sa.Text(), nullable=False),
        sa.Column("modes", JSON, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("message_channel", sa.String(length=32), nullable=True),
        sa.Column("message_ts", sa.String(length=32), nullable=True),
        sa.Column("plan", JSON, nullable=False),
        sa.Column("plan_hash", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("executor", sa.String(length=64), nullable=True),
        sa.Column("heartbeat_at", WHEN, nullable=True),
        sa.Column("summary", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["change_request.id"], name=op.f("fk_change_request_parent_id_change_request")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_request")),
    )
    op.create_index(op.f("ix_change_request_state"), "change_request", ["state"])
    op.create_index(op.f("ix_change_request_created_at"), "change_request", ["created_at"])
    op.create_table(
        "change_approval",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["change_request.id"], name=op.f("fk_change_approval_request_id_change_request")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_approval")),
        sa.UniqueConstraint("request_id", "approver", name=op.f("uq_change_approval_request_id")),
    )
    op.create_table(
        "change_result",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("interface_uuid", sa.String(length=36), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("before", JSON, nullable=False),
        sa.Column("after", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("activation", sa.String(length=24), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["change_request.id"], name=op.f("fk_change_result_request_id_change_request")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_result")),
        sa.UniqueConstraint("request_id", "interface_uuid", name=op.f("uq_change_result_request_id")),
    )
    op.create_table(
        "pending_activation",
        sa.Column("interface_uuid", sa.String(length=36), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("owner_uuid", sa.String(length=36), nullable=False),
        sa.Column("method", sa.String(length=24), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("since", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["change_request.id"], name=op.f("fk_pending_activation_request_id_change_request")
        ),
        sa.PrimaryKeyConstraint("interface_uuid", name=op.f("pk_pending_activation")),
    )


def downgrade() -> None:
    op.drop_table("pending_activation")
    op.drop_table("change_result")
    op.drop_table("change_approval")
    op.drop_index(op.f("ix_change_request_created_at"), table_name="change_request")
    op.drop_index(op.f("ix_change_request_state"), table_name="change_request")
    op.drop_table("change_request")
