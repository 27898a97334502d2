"""active selection: how each comparison set was chosen, its hand-out priority and its reward scores

A round's `selection` setting (random or uncertainty, app/training/selection.py) decides which prompts get
new sets and which open sets are handed out first. Each set keeps the choice (`selection`, "" for sets not
made by the worker's generation), the priority it got (`selection_priority`, 0 unless chosen by
uncertainty) and the reward model's scores of its candidates with their uncertainty and spread
(`selection_scores`), so the effect can be analysed. The hand-out index gains the priority after the prompt
set's and the prompt's, so the next task is still an index walk.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("status = 'open'")


def _handout_index(with_selection: bool) -> None:
    keys = [sa.text("prompt_set_priority DESC"), sa.text("prompt_priority DESC")]
    if with_selection:
        keys.append(sa.text("selection_priority DESC"))
    keys += [sa.text("submitted_count DESC"), "created_at", "id"]
    op.create_index("ix_comparison_sets_handout", "comparison_sets", keys, postgresql_where=_OPEN)


def upgrade() -> None:
    op.add_column(
        "comparison_sets", sa.Column("selection", sa.String(length=20), server_default="", nullable=False)
    )
    op.add_column(
        "comparison_sets", sa.Column("selection_priority", sa.Float(), server_default="0", nullable=False)
    )
    op.add_column(
        "comparison_sets",
        sa.Column(
            "selection_scores", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
    )
    op.drop_index("ix_comparison_sets_handout", table_name="comparison_sets", postgresql_where=_OPEN)
    _handout_index(with_selection=True)


def downgrade() -> None:
    op.drop_index("ix_comparison_sets_handout", table_name="comparison_sets", postgresql_where=_OPEN)
    _handout_index(with_selection=False)
    for name in ("selection_scores", "selection_priority", "selection"):
        op.drop_column("comparison_sets", name)
