"""names per project: prompt sets and model versions are unique by (project, name), not globally

Two projects may each have a prompt set called "imported" and each an external version called "gpt-4" (the
author of texts imported into that project), so one project's import never writes into, or shows, another's.
Downgrading needs the names to be globally unique again (it fails otherwise, naming the clash).

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("prompt_sets", "model_versions")


def upgrade() -> None:
    for table in TABLES:
        op.drop_constraint(f"uq_{table}_name", table, type_="unique")
        op.create_unique_constraint(f"uq_{table}_project_id_name", table, ["project_id", "name"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_constraint(f"uq_{table}_project_id_name", table, type_="unique")
        op.create_unique_constraint(f"uq_{table}_name", table, ["name"])
