"""gold sets: comparison sets with a known ranking, mixed blind into annotators' queues

comparison_sets.gold_tiers holds the known ranking (candidate ids, best tier first; NULL: not gold). A gold
set stays open for every annotator (no overlap), is handed out at the project's gold_rate (NULL: the
server's RANKLOOP_GOLD_RATE), and its rankings score annotators instead of training models.

Revision ID: 0012
Revises: 0011 (the lead re-chains it after 0011 at merge)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "comparison_sets", sa.Column("gold_tiers", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_index(
        "ix_comparison_sets_gold",
        "comparison_sets",
        ["project_id", "id"],
        postgresql_where=sa.text("gold_tiers IS NOT NULL AND status = 'open'"),
    )
    op.add_column("projects", sa.Column("gold_rate", sa.Float(), nullable=True))
    op.create_check_constraint(
        op.f("ck_projects_gold_rate_fraction"),
        "projects",
        "gold_rate IS NULL OR (gold_rate >= 0 AND gold_rate <= 1)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_projects_gold_rate_fraction"), "projects", type_="check")
    op.drop_column("projects", "gold_rate")
    op.drop_index("ix_comparison_sets_gold", table_name="comparison_sets")
    op.drop_column("comparison_sets", "gold_tiers")
