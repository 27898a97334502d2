"""The migrations produce exactly the schema the ORM describes, and downgrade cleanly."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
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


@contextmanager
def _fresh_database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Config]:
    """A new, empty database as DATABASE_URL, dropped afterwards; yields the app's alembic config."""
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
        yield alembic_config()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_downgrade_upgrade_on_a_fresh_database(database_url, monkeypatch):
    from app.db import libpq_url

    with _fresh_database(monkeypatch, database_url) as cfg:
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "base")
        command.upgrade(cfg, "head")
        with psycopg.connect(libpq_url(os.environ["DATABASE_URL"])) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert {"rankings", "assignments", "rounds", "procrastinate_jobs"} <= tables


def test_candidates_generated_before_the_truncated_column_are_marked_from_their_finish_reason(
    database_url, monkeypatch
):
    from app.db import libpq_url

    with _fresh_database(monkeypatch, database_url) as cfg:
        command.upgrade(cfg, "0005")
        with psycopg.connect(libpq_url(os.environ["DATABASE_URL"])) as conn:
            conn.execute("INSERT INTO prompt_sets (id, name) VALUES (1, 'ps')")
            conn.execute("INSERT INTO prompts (id, prompt_set_id, text) VALUES (1, 1, 'p')")
            conn.execute(
                "INSERT INTO model_versions (id, name, kind, status, config, metrics)"
                " VALUES (1, 'v', 'policy', 'active', '{}', '{}')"
            )
            for cid, params in (
                (1, '{"finish_reason": "length"}'),
                (2, '{"finish_reason": "stop"}'),
                (3, "{}"),
            ):
                conn.execute(
                    "INSERT INTO candidates (id, prompt_id, model_version_id, text, generation_params)"
                    " VALUES (%s, 1, 1, 'c', %s)",
                    (cid, params),
                )
        command.upgrade(cfg, "0006")
        with psycopg.connect(libpq_url(os.environ["DATABASE_URL"])) as conn:
            rows = dict(conn.execute("SELECT id, truncated FROM candidates ORDER BY id").fetchall())
        # Cut at max_new_tokens: marked; stopped on its own or imported (no finish reason): not.
        assert rows == {1: True, 2: False, 3: False}
