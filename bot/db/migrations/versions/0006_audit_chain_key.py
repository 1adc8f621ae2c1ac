"""audit_chain_key: where the keyed (HMAC-SHA256) part of the audit chain starts.

Revision ID: 0006
Revises: 0005

The hash chain alone has no secret: whoever can write the table (the bot's own role, with the
triggers out of the way) can edit a row and recompute every later hash. From the first row
written with ``[audit] key_file`` configured, each hash is an HMAC under that key, which lives
outside the database. Rows written before stay checkable as the old unkeyed chain; this table
records the id of the first keyed row and a fingerprint of the key (never the key). It is
append-only like the log, so the start cannot quietly be moved.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_FUNCTION = """
CREATE FUNCTION audit_chain_key_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = 'audit_chain_key is append-only (' || TG_OP || ' refused)';
END
$$
"""

_PG_TRIGGERS = (
    "CREATE TRIGGER audit_chain_key_append_only BEFORE UPDATE OR DELETE ON audit_chain_key "
    "FOR EACH ROW EXECUTE FUNCTION audit_chain_key_append_only()",
    "CREATE TRIGGER audit_chain_key_no_truncate BEFORE TRUNCATE ON audit_chain_key "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_key_append_only()",
)

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_chain_key_no_update BEFORE UPDATE ON audit_chain_key "
    "BEGIN SELECT RAISE(ABORT, 'audit_chain_key is append-only'); END",
    "CREATE TRIGGER audit_chain_key_no_delete BEFORE DELETE ON audit_chain_key "
    "BEGIN SELECT RAISE(ABORT, 'audit_chain_key is append-only'); END",
)


def upgrade() -> None:
    op.create_table(
        "audit_chain_key",
        sa.Column("first_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("first_id", name="pk_audit_chain_key"),
    )
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    elif dialect == "sqlite":
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_chain_key_no_truncate ON audit_chain_key")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_key_append_only ON audit_chain_key")
        op.execute("DROP FUNCTION IF EXISTS audit_chain_key_append_only()")
    op.drop_table("audit_chain_key")
