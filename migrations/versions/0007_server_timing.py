"""server-measured time per ranking: from the lease handed out to the submission

`rankings.seconds_spent` was the client's figure (or the lease age when the client sent none), so a
script that claims 50 s per task showed a 50 s median while posting hundreds of rankings a minute.
`server_seconds` is measured by the server alone; `seconds_spent` stays as the client's claim, an extra.
Existing rankings get theirs from their assignment (lease start to completion); imported ones have none.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("rankings", sa.Column("server_seconds", sa.Float(), nullable=True))
    op.execute(
        """
        UPDATE rankings r
        SET server_seconds = greatest(0, extract(epoch FROM a.completed_at - a.leased_at))
        FROM assignments a
        WHERE a.id = r.assignment_id AND r.source <> 'import' AND a.completed_at IS NOT NULL
        """
    )


def downgrade() -> None:
    op.drop_column("rankings", "server_seconds")
