"""app.db's hot-path helpers behave as the slower ways they replace: first_row (a statement through the
driver's own cursor) as one through the session (same transaction, statement events, SQLAlchemy's errors, a
lost connection invalidated); persistent (an object from a row) as one a query loaded."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import DataError, OperationalError, ProgrammingError

from app.db import first_row, get_engine, libpq_url, persistent, session_factory
from app.orm import Role, User
from tests.factories import make_annotator


def test_it_runs_in_the_session_transaction_and_fires_the_statement_events(clean_db):
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = get_engine()
    session = session_factory()()
    event.listen(engine, "before_cursor_execute", record)
    try:
        session.execute(text("CREATE TEMP TABLE t (x integer) ON COMMIT DROP"))
        session.execute(text("INSERT INTO t VALUES (7)"))
        assert first_row(session, "SELECT x, %(y)s::text FROM t", {"y": "why"}) == (7, "why")
        assert first_row(session, "SELECT x FROM t WHERE x > %(x)s", {"x": 7}) is None
        session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", record)
        session.close()
    assert seen[-2:] == ["SELECT x, %(y)s::text FROM t", "SELECT x FROM t WHERE x > %(x)s"]


def test_driver_errors_arrive_as_sqlalchemy_errors_and_the_session_recovers(clean_db):
    session = session_factory()()
    try:
        with pytest.raises(DataError):
            first_row(session, "SELECT %(x)s::integer", {"x": 2**40})
        session.rollback()
        with pytest.raises(ProgrammingError):
            first_row(session, "SELECT no_such_function()", {})
        session.rollback()
        assert first_row(session, "SELECT 1", {}) == (1,)
    finally:
        session.close()


def test_a_lost_connection_is_an_operational_error_and_the_next_session_gets_a_live_one(clean_db):
    session = session_factory()()
    try:
        pid = first_row(session, "SELECT pg_backend_pid()", {})
        assert pid is not None
        with psycopg.connect(libpq_url(clean_db), autocommit=True) as admin:
            # Waits (up to 10 s) until the backend has exited.
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid[0],))
        with pytest.raises(OperationalError):
            first_row(session, "SELECT 1", {})
    finally:
        session.close()
    session = session_factory()()
    try:
        assert first_row(session, "SELECT 1", {}) == (1,)
    finally:
        session.close()


def test_an_object_made_from_a_row_is_as_if_loaded(db):
    user = make_annotator(db, "ann")
    db.flush()
    user_id, created_at = user.id, user.created_at
    db.expunge_all()
    made = persistent(db, inspect(User), {"id": user_id, "username": "ann", "role": Role.annotator})
    state = inspect(made)
    assert state.persistent and not db.dirty
    assert made.username == "ann" and not state.attrs.username.history.has_changes()
    assert db.get(User, user_id) is made  # the identity map has it: no second copy
    assert made.created_at == created_at  # a column not given is loaded when read
    made.role = Role.admin  # and a change flushes as usual
    db.flush()
    db.expunge_all()
    assert db.scalar(select(User.role).where(User.id == user_id)) == Role.admin


def _count(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as other:
        row = other.execute("SELECT count(*) FROM first_row_probe").fetchone()
        assert row is not None
        return int(row[0])


def test_a_whole_unit_runs_as_its_own_transaction_only_when_the_session_has_none(clean_db):
    insert = "INSERT INTO first_row_probe (note) VALUES (%(note)s) RETURNING note"
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as admin:
        admin.execute("CREATE TABLE first_row_probe (note text)")
    session = session_factory()()
    try:
        assert first_row(session, insert, {"note": "alone"}, whole_unit=True) is not None
        assert _count(clean_db) == 1  # committed by itself, before the session's commit
        dbapi = session.connection().connection.dbapi_connection
        assert dbapi is not None and not dbapi.autocommit  # type: ignore[attr-defined]
        # Once the session has a transaction, a whole unit joins it like any statement.
        first_row(session, "SELECT 1", {})
        first_row(session, insert, {"note": "joined"}, whole_unit=True)
        assert _count(clean_db) == 1
        session.rollback()
        assert _count(clean_db) == 1
        # A failing whole unit leaves the connection as it was, and the session usable.
        dbapi = session.connection().connection.dbapi_connection
        with pytest.raises(DataError):
            first_row(session, "SELECT %(x)s::integer", {"x": 2**40}, whole_unit=True)
        assert dbapi is not None and not dbapi.autocommit  # type: ignore[attr-defined]
        session.rollback()
        assert first_row(session, "SELECT 1", {}) == (1,)
    finally:
        session.close()
        with psycopg.connect(libpq_url(clean_db), autocommit=True) as admin:
            admin.execute("DROP TABLE first_row_probe")
