"""The migrations produce exactly the schema the ORM describes, and downgrade cleanly."""

from __future__ import annotations

import os

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


def test_upgrade_downgrade_upgrade_on_a_fresh_database(database_url, monkeypatch):
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from alembic import command

    from app.config import get_settings
    from app.db import libpq_url
    from app.migrate import alembic_config

    parts = urlsplit(database_url)
    name = f"rankloop_mig_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("DATABASE_URL", urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, "")))
    get_settings.cache_clear()
    try:
        cfg = alembic_config()
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "base")
        command.upgrade(cfg, "head")
        with psycopg.connect(libpq_url(os.environ["DATABASE_URL"])) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"rankings", "assignments", "rounds", "procrastinate_jobs"} <= tables
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
