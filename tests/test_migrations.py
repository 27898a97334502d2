"""The migrations produce exactly the schema the ORM describes, and downgrade cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from app.db import sqlalchemy_url
from app.orm import Base


def test_orm_matches_migrated_schema(database_url):
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if not _is_foreign_table(d)]
    engine.dispose()
    assert diff == [], f"ORM and migrations disagree; write a migration: {diff}"


def _is_foreign_table(diff: object) -> bool:
    # Tables owned by other tools (procrastinate's queue, alembic's version table) are not ours to describe.
    if isinstance(diff, tuple) and diff and diff[0] in ("remove_table", "remove_index", "remove_constraint"):
        obj = diff[1]
        name = getattr(obj, "name", "") or ""
        table = getattr(getattr(obj, "table", None), "name", "") or ""
        return name.startswith("procrastinate") or table.startswith("procrastinate")
    if isinstance(diff, list):
        return all(_is_foreign_table(d) for d in diff)
    return False
