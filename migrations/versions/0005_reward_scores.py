"""reward scores: a reward model's score of each candidate of the comparison sets the worker made

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reward_scores",
        sa.Column("reward_version_id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["candidates.id"],
            name=op.f("fk_reward_scores_candidate_id_candidates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reward_version_id"],
            ["model_versions.id"],
            name=op.f("fk_reward_scores_reward_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reward_version_id", "candidate_id", name=op.f("pk_reward_scores")),
    )
    op.create_index(op.f("ix_reward_scores_candidate_id"), "reward_scores", ["candidate_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reward_scores_candidate_id"), table_name="reward_scores")
    op.drop_table("reward_scores")
