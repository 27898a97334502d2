"""The annotation hot path stays lean: a bounded number of SQL statements per API call, and the clocks it
reads are taken after the locks it waits for."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy import event, select, update

from app.auth import token_cache
from app.db import get_engine, libpq_url, session_factory, session_scope
from app.orm import ApiToken, Assignment, User
from tests.factories import make_annotator, make_comparison_set

# Steady state, API token already marked used this minute and remembered by this process. Raise these
# only for a reason. next: the database function rankloop_next_task (annotator lock, current lease, gold
# pick, hand-out lock, fresh re-count, lease); submit: rankloop_submit_ranking (the locks, set then
# assignment, with the clock; the checks against the task; the ranking with its assignment's submission
# and set's closing, or the identical stored ranking).
NEXT_TASK_STATEMENTS = 1
SUBMIT_STATEMENTS = 1


@contextmanager
def counted() -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_next_and_submit_issue_a_bounded_number_of_statements(app_client, api_token, monkeypatch):
    monkeypatch.setattr(token_cache, "TTL_SECONDS", 600.0)  # however slow the machine, the token stays known
    with session_scope() as s:
        for _ in range(3):
            make_comparison_set(s, k=4)
    h = {"Authorization": f"Bearer {api_token('ann')}"}
    assert app_client.get("/api/v1/tasks/next", headers=h).status_code == 200  # marks the token used
    with session_scope() as s:
        s.execute(update(Assignment).values(status="skipped"))
    with counted() as statements:
        task = app_client.get("/api/v1/tasks/next", headers=h).json()
    assert len(statements) <= NEXT_TASK_STATEMENTS, "\n".join(statements)
    body = {"assignment_id": task["assignment_id"], "tiers": [[c["id"]] for c in task["candidates"]]}
    with counted() as statements:
        assert app_client.post("/api/v1/rankings", headers=h, json=body).status_code == 201
    assert len(statements) <= SUBMIT_STATEMENTS, "\n".join(statements)
    with counted() as statements:
        assert app_client.post("/api/v1/rankings", headers=h, json=body).status_code == 200
    assert len(statements) <= SUBMIT_STATEMENTS


def test_token_use_is_recorded_at_most_once_a_minute(app_client, api_token):
    h = {"Authorization": f"Bearer {api_token('ann')}"}

    def last_used() -> dt.datetime | None:
        with session_scope() as s:
            return s.scalars(select(ApiToken.last_used_at)).one()

    assert last_used() is None
    assert app_client.get("/api/v1/tasks/next", headers=h).status_code == 204
    first = last_used()
    assert first is not None
    with counted() as statements:
        app_client.get("/api/v1/tasks/next", headers=h)
    assert last_used() == first
    assert not any(s.lstrip().upper().startswith("UPDATE API_TOKENS") for s in statements)
    with session_scope() as s:
        s.execute(update(ApiToken).values(last_used_at=first - dt.timedelta(minutes=2)))
    token_cache.clear()  # as after TTL_SECONDS: a change made behind this process's back
    app_client.get("/api/v1/tasks/next", headers=h)
    again = last_used()
    assert again is not None and again > first


def _hold_row_lock(
    url: str, table: str, row_id: int, held: threading.Event, seconds: float, out: dict
) -> None:
    with psycopg.connect(libpq_url(url)) as conn:
        query = sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE").format(sql.Identifier(table))
        conn.execute(query, (row_id,))
        held.set()
        time.sleep(seconds)
        out["released"] = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        conn.commit()


def test_clocks_are_read_after_the_row_locks_are_granted(clean_db):
    from app.annotation import service, submission_repository
    from app.config import get_settings

    with session_scope() as s:
        user = make_annotator(s)
        for _ in range(2):
            make_comparison_set(s, overlap=1)
        s.flush()
        task = service.next_task(s, get_settings(), user)
        assert task is not None
        user_id, assignment_id = user.id, task.assignment.id
        # The second hand-out below must lease a new set: this lease is given up.
        service.skip_task(s, user, assignment_id, "to lease another")

    def hand_out(s) -> dt.datetime:  # type: ignore[no-untyped-def]
        got = service.next_task(s, get_settings(), s.get(User, user_id))
        assert got is not None and got.assignment.id != assignment_id
        return got.assignment.leased_at

    def lock_submission(s) -> dt.datetime:  # type: ignore[no-untyped-def]
        locked = submission_repository.lock_submission(s, assignment_id, user_id)
        assert locked is not None
        return locked.now

    for table, row_id, call in (
        ("users", user_id, hand_out),
        ("assignments", assignment_id, lock_submission),
    ):
        held, out = threading.Event(), {}
        holder = threading.Thread(target=_hold_row_lock, args=(clean_db, table, row_id, held, 0.5, out))
        holder.start()
        held.wait(10)
        session = session_factory()()
        try:
            now = call(session)
        finally:
            session.rollback()
            session.close()
        holder.join()
        # A clock read before waiting would be about half a second older than the release.
        assert now >= out["released"], (table, now, out["released"])


def test_a_set_locked_for_a_moment_by_someone_else_is_waited_for_not_reported_as_nothing_left(clean_db):
    from app.annotation import service
    from app.config import get_settings

    with session_scope() as s:
        user = make_annotator(s)
        only = make_comparison_set(s, overlap=2)
        user_id, set_id = user.id, only.id
    # Another annotator's hand-out (or submission) holds the only open set's row lock for a moment.
    held, out = threading.Event(), {}
    holder = threading.Thread(
        target=_hold_row_lock, args=(clean_db, "comparison_sets", set_id, held, 0.5, out)
    )
    holder.start()
    held.wait(10)
    session = session_factory()()
    try:
        task = service.next_task(session, get_settings(), session.get(User, user_id))
        session.commit()
    finally:
        session.close()
    holder.join()
    assert task is not None and task.assignment.set_id == set_id
