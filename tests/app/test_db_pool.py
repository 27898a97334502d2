"""Pooled connections the server has closed are replaced, without a ping per checkout (app.db)."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import text

from app.db import get_engine, libpq_url, session_factory


def _terminate_pooled_backends(url: str) -> set[int]:
    """Kill every other backend of the database (as a restart or an idle timeout would); their pids."""
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        pids = {
            row[0]
            for row in admin.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        }
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the backends did not exit"
            time.sleep(0.05)
    return pids


def test_connections_killed_by_the_server_are_replaced_at_checkout(clean_db):
    engine = get_engine()
    # Fill the pool with several idle connections.
    held = [engine.connect() for _ in range(3)]
    for conn in held:
        conn.execute(text("SELECT 1"))
    for conn in held:
        conn.close()
    assert engine.pool.checkedin() >= 3  # type: ignore[attr-defined]
    killed = _terminate_pooled_backends(clean_db)
    assert killed
    # Every checkout, even of all pooled connections at once, answers on a live backend.
    again = [engine.connect() for _ in range(3)]
    try:
        pids = {conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in again}
    finally:
        for conn in again:
            conn.close()
    assert not pids & killed


def test_a_request_session_after_a_server_side_kill_works(clean_db):
    session = session_factory()()
    try:
        session.execute(text("SELECT 1"))
    finally:
        session.close()
    _terminate_pooled_backends(clean_db)
    session = session_factory()()
    try:
        assert session.execute(text("SELECT 1")).scalar_one() == 1
        session.commit()
    finally:
        session.close()
