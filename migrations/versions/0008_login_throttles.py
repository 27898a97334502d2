"""login throttles: failed logins counted per key in one locked row (was: one row per failure)

A login attempt locks its keys' rows before the password is checked, so simultaneous attempts are counted
one after the other and never get more password checks than the limit; the old table counted rows that
concurrent attempts inserted only after their checks. Failures in flight are not carried over: the old
rows only ever blocked for a short window.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttles")),
    )
    op.create_index(
        op.f("ix_login_throttles_last_failure_at"), "login_throttles", ["last_failure_at"], unique=False
    )
    op.drop_index("ix_login_failures_key_created_at", table_name="login_failures")
    op.drop_table("login_failures")


def downgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_key_created_at", "login_failures", ["key", "created_at"], unique=False)
    op.drop_index(op.f("ix_login_throttles_last_failure_at"), table_name="login_throttles")
    op.drop_table("login_throttles")
