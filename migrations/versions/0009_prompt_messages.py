"""prompts.messages: a prompt may be a conversation (system, earlier turns, ending with a user turn)

The turns are stored as TRL's message list; prompts.text keeps the flattened text. Existing prompts are
plain texts (NULL), including the Open-Assistant prompts imported before as "User: ...\\n\\nAssistant: ..."
strings: re-importing their file gives them their turns (the import fills in the conversation of a prompt
whose text it finds).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("prompts", sa.Column("messages", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("prompts", "messages")
