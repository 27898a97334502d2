"""candidates.truncated: the reply was cut at max_new_tokens (the ranking page marks such candidates)

Existing generated candidates already carry the finish reason in generation_params; they are marked from
it, so the flag is right for old rows too. Imported candidates have no finish reason and stay unmarked.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("candidates", sa.Column("truncated", sa.Boolean(), server_default="false", nullable=False))
    op.execute("UPDATE candidates SET truncated = true WHERE generation_params->>'finish_reason' = 'length'")


def downgrade() -> None:
    op.drop_column("candidates", "truncated")
