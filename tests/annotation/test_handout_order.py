"""The hand-out order's keys on comparison_sets (kept by triggers, migration 0003) always match the truth,
whoever changes priorities or assignments, and the next-task query walks their index instead of sorting."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from app.annotation import repository as repo
from app.annotation import service
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.db import session_scope
from app.orm import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    Prompt,
    PromptSet,
    User,
)
from tests.factories import (
    make_annotator,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)


def keys_match_the_truth(db: Session) -> None:
    truth = (
        select(
            ComparisonSet.id,
            PromptSet.priority,
            Prompt.priority,
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.set_id == ComparisonSet.id, Assignment.status == AssignmentStatus.submitted)
            .scalar_subquery(),
        )
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
    )
    stored = select(
        ComparisonSet.id,
        ComparisonSet.prompt_set_priority,
        ComparisonSet.prompt_priority,
        ComparisonSet.submitted_count,
    )
    assert sorted(map(tuple, db.execute(stored))) == sorted(map(tuple, db.execute(truth)))


def test_priorities_are_copied_and_follow_changes_to_prompts_and_prompt_sets(db):
    low, high = make_prompt_set(db, priority=1), make_prompt_set(db, priority=7)
    p1, p2 = make_prompt(db, low, priority=3), make_prompt(db, high, priority=-2)
    sets = [make_comparison_set(db, p1), make_comparison_set(db, p1), make_comparison_set(db, p2)]
    keys_match_the_truth(db)
    db.execute(update(PromptSet).where(PromptSet.id == low.id).values(priority=9))
    keys_match_the_truth(db)
    db.execute(update(Prompt).where(Prompt.id == p2.id).values(priority=11))
    keys_match_the_truth(db)
    db.execute(update(Prompt).where(Prompt.id == p1.id).values(prompt_set_id=high.id))
    keys_match_the_truth(db)
    db.execute(update(ComparisonSet).where(ComparisonSet.id == sets[2].id).values(prompt_id=p1.id))
    keys_match_the_truth(db)


def test_a_priority_raised_after_the_sets_exist_changes_what_is_handed_out(db):
    first, later = make_prompt_set(db), make_prompt_set(db)
    make_comparison_set(db, make_prompt(db, first))
    boosted = make_comparison_set(db, make_prompt(db, later))
    db.execute(update(PromptSet).where(PromptSet.id == later.id).values(priority=5))
    db.expire_all()
    task = service.next_task(db, get_settings(), make_annotator(db))
    assert task is not None and task.assignment.set_id == boosted.id


def test_submitted_count_follows_every_kind_of_change(db):
    rng = random.Random(7)
    sets = [make_comparison_set(db, k=3, overlap=4) for _ in range(4)]
    people = [make_annotator(db) for _ in range(6)]
    for _ in range(40):
        user = rng.choice(people)
        task = service.next_task(db, get_settings(), user)
        if task is None:
            continue
        if rng.random() < 0.25:
            service.skip_task(db, user, task.assignment.id, "not for me")
        else:
            tiers = [[c.id] for c in task.candidates]
            service.submit_ranking(
                db, get_settings(), user, RankingIn(assignment_id=task.assignment.id, tiers=tiers)
            )
    keys_match_the_truth(db)
    # Direct writes the service never makes: a status flipped back, a row moved, rows deleted.
    submitted = db.scalars(select(Assignment).where(Assignment.status == AssignmentStatus.submitted)).all()
    assert len(submitted) >= 4
    db.execute(update(Assignment).where(Assignment.id == submitted[0].id).values(status="leased"))
    db.execute(
        update(Assignment).where(Assignment.id == submitted[1].id).values(set_id=make_comparison_set(db).id)
    )
    db.execute(delete(Assignment).where(Assignment.id == submitted[2].id))
    db.execute(
        insert(Assignment).values(
            set_id=sets[0].id,
            annotator_id=make_annotator(db).id,
            status="submitted",
            display_order=[],
            leased_at=func.now(),
            lease_expires_at=func.now(),
        )
    )
    keys_match_the_truth(db)


def test_imported_rankings_count_too(db):
    from app.prompts import service as imports
    from app.prompts.schemas import ImportKind

    line = b'{"prompt": "Which is better?", "chosen": "this", "rejected": "that"}\n'
    imports.import_file(db, get_settings(), line, ImportKind.pairs, "imported-set", "pairs.jsonl")
    assert db.scalar(select(func.max(ComparisonSet.submitted_count))) == 1
    keys_match_the_truth(db)


def _many_open_sets(n: int) -> tuple[list[int], int]:
    """n open sets of two candidates, analysed; their ids in creation order and an annotator's id."""
    with session_scope() as s:
        ps = make_prompt_set(s)
        mv = make_model_version(s)
        prompt_ids = s.scalars(
            insert(Prompt).returning(Prompt.id), [{"prompt_set_id": ps.id, "text": f"q{i}"} for i in range(n)]
        ).all()
        cands = s.scalars(
            insert(Candidate).returning(Candidate.id),
            [
                {"prompt_id": p, "model_version_id": mv.id, "text": f"a{j}"}
                for p in prompt_ids
                for j in range(2)
            ],
        ).all()
        set_ids = s.scalars(
            insert(ComparisonSet).returning(ComparisonSet.id),
            [{"prompt_id": p, "overlap": 2} for p in prompt_ids],
        ).all()
        s.execute(
            insert(ComparisonSetItem),
            [
                {"set_id": sid, "candidate_id": cands[2 * i + j], "position": j}
                for i, sid in enumerate(set_ids)
                for j in range(2)
            ],
        )
        user = make_annotator(s)
        s.connection().exec_driver_sql("ANALYZE")
        return list(set_ids), user.id


def _explain_last(s: Session, run) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """EXPLAIN ANALYZE (JSON) of the last statement `run(s)` issues, run again with the same parameters."""
    from sqlalchemy import event

    captured: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        captured.append((statement, parameters))

    engine = s.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        run(s)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    statement, parameters = captured[-1]
    cursor = s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
    return cursor.fetchone()[0][0]  # type: ignore[no-any-return, index]


def _nested_plans(s: Session, run) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """The EXPLAIN ANALYZE (JSON) of every statement `run(s)` executes, those inside database functions
    included (auto_explain, sent to this client as notices)."""
    import json

    from psycopg import errors

    conn = s.connection().connection.driver_connection
    assert conn is not None
    plans: list[dict] = []  # type: ignore[type-arg]

    def on_notice(diag) -> None:  # type: ignore[no-untyped-def]
        text = diag.message_primary or ""
        if "plan:" in text:
            plans.append(json.loads(text.split("plan:", 1)[1]))

    try:
        s.connection().exec_driver_sql("LOAD 'auto_explain'")
    except Exception as exc:
        if not isinstance(getattr(exc, "orig", None), errors.UndefinedFile | errors.InsufficientPrivilege):
            raise
        pytest.skip(f"auto_explain is not available on this server: {exc}")
    for setting in (
        "log_min_duration = 0",
        "log_analyze = on",
        "log_nested_statements = on",
        "log_format = 'json'",
        "log_level = 'notice'",
    ):
        s.connection().exec_driver_sql(f"SET LOCAL auto_explain.{setting}")
    conn.add_notice_handler(on_notice)
    try:
        run(s)
    finally:
        conn.remove_notice_handler(on_notice)
        s.connection().exec_driver_sql("SET LOCAL auto_explain.log_min_duration = -1")
    return plans


def test_next_task_walks_the_index_instead_of_sorting_every_open_set(clean_db):
    set_ids, user_id = _many_open_sets(2000)
    with session_scope() as s:
        user = s.get(User, user_id)
        picked: list[object] = []
        plans = _nested_plans(s, lambda s: picked.append(service.next_task(s, get_settings(), user)))
        task = picked[0]
        assert isinstance(task, service.TaskView) and task.assignment.set_id == set_ids[0]
    # The ordinary pick inside rankloop_next_task (the one statement that skips locked sets).
    [plan] = [
        p for p in plans if "SKIP LOCKED" in p["Query Text"] and "gold_tiers IS NULL" in p["Query Text"]
    ]
    text_plan = str(plan)
    assert "ix_comparison_sets_handout" in text_plan
    assert "'Sort'" not in text_plan, "the open sets are sorted instead of read in index order"
    # Only the first eligible set's conditions were evaluated, not all 2,000.
    assert _max_loops(plan["Plan"]) < 10


def _max_loops(node: dict) -> int:
    loops = int(node.get("Actual Loops", 1))
    return max([loops, *(_max_loops(child) for child in node.get("Plans", []))])


def _rows_read_from(node: dict, table: str) -> int:  # type: ignore[type-arg]
    """Rows the plan's scans of `table` produced, all loops together."""
    own = 0
    if node.get("Relation Name") == table:
        own = int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
    return own + sum(_rows_read_from(child, table) for child in node.get("Plans", []))


def test_sets_left_stops_counting_at_the_cap_instead_of_scanning_every_open_set(clean_db):
    n = 3 * repo.LEFT_COUNT_CAP
    set_ids, user_id = _many_open_sets(n)
    with session_scope() as s:
        now = repo.db_now(s)
        counted: list[int] = []
        plan = _explain_last(s, lambda s: counted.append(repo.count_available_sets(s, user_id, now)))
        assert counted == [repo.LEFT_COUNT_CAP + 1]
        # The open sets are read in hand-out order and the count stops at the cap: the rows read from
        # comparison_sets are bounded by the cap, not by the 600 open sets.
        text_plan = str(plan)
        assert "ix_comparison_sets_handout" in text_plan
        assert "'Sort'" not in text_plan
        assert _rows_read_from(plan["Plan"], "comparison_sets") <= repo.LEFT_COUNT_CAP + 1
        user = s.get(User, user_id)
        assert user is not None
        left = service.progress(s, user).left
        assert left == repo.LEFT_COUNT_CAP + 1 and service.Progress(0, left).capped
    # Under the cap the count is exact: leave a few sets open and close the rest.
    with session_scope() as s:
        s.execute(update(ComparisonSet).where(ComparisonSet.id.not_in(set_ids[:7])).values(status="closed"))
    with session_scope() as s:
        user = s.get(User, user_id)
        assert user is not None
        progress = service.progress(s, user)
        assert progress.left == 7 and not progress.capped


def test_upgrade_backfills_the_keys_of_existing_sets(database_url, monkeypatch):
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from alembic import command

    from app.db import libpq_url
    from app.migrate import alembic_config

    parts = urlsplit(database_url)
    name = f"rankloop_backfill_{uuid.uuid4().hex[:8]}"
    admin = libpq_url(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        cfg = alembic_config()
        command.upgrade(cfg, "0002")
        with psycopg.connect(libpq_url(url)) as conn:
            conn.execute(
                "INSERT INTO prompt_sets (id, name, priority) VALUES (1, 'a', 4);"
                "INSERT INTO prompts (id, prompt_set_id, text, priority) VALUES (1, 1, 'q', 2);"
                "INSERT INTO comparison_sets (id, prompt_id, overlap, status) VALUES (1, 1, 3, 'open'),"
                " (2, 1, 3, 'open');"
                "INSERT INTO users (id, username, role)"
                " VALUES (1, 'u1', 'annotator'), (2, 'u2', 'annotator');"
                "INSERT INTO assignments (set_id, annotator_id, status, display_order, leased_at,"
                " lease_expires_at) VALUES (1, 1, 'submitted', '{}', now(), now()),"
                " (1, 2, 'submitted', '{}', now(), now()), (2, 1, 'skipped', '{}', now(), now())"
            )
        command.upgrade(cfg, "head")
        with psycopg.connect(libpq_url(url)) as conn:
            rows = conn.execute(
                "SELECT id, prompt_set_priority, prompt_priority, submitted_count"
                " FROM comparison_sets ORDER BY id"
            ).fetchall()
        assert rows == [(1, 4, 2, 2), (2, 4, 2, 0)]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_uncertainty_selection_hands_out_the_most_uncertain_sets_first_with_the_random_share(db):
    from app.training import selection

    # A pool of sets the worker scored; it keeps 6 (2 of them random picks) and gives them priorities.
    pool = [0.05, 0.9, 0.5, 0.7, 0.3, 0.95, 0.2, 0.6, 0.1, 0.8]
    picks = selection.choose(pool, 6, 1 / 3, seed=5)
    ps = make_prompt_set(db)
    older_random = make_comparison_set(db, make_prompt(db, ps))  # made by a random-selection round
    made: dict[int, int] = {}
    for p in reversed(picks):  # stored in another order than handed out: the priority decides
        cset = make_comparison_set(db, make_prompt(db, ps))
        cset.selection, cset.selection_priority = "uncertainty", p.priority
        cset.selection_scores = {"uncertainty": pool[p.index], "pick": p.pick}
        made[p.index] = cset.id
    db.flush()
    user = make_annotator(db)
    order: list[int] = []
    while (task := service.next_task(db, get_settings(), user)) is not None:
        order.append(task.assignment.set_id)
        service.skip_task(db, user, task.assignment.id, "to see the next one")
    assert order == [made[p.index] for p in picks] + [older_random.id]
    handed = [db.get(ComparisonSet, i) for i in order[:-1]]
    kinds = [c.selection_scores["pick"] for c in handed]
    assert kinds.count("random") == 2 and kinds[0] == "uncertain"
    # The uncertain ones in order of falling uncertainty; the random ones from outside the top four.
    uncertain = [
        c.selection_scores["uncertainty"] for c in handed if c.selection_scores["pick"] == "uncertain"
    ]
    assert uncertain == [0.95, 0.9, 0.8, 0.7]
    assert all(
        c.selection_scores["uncertainty"] < 0.7 for c in handed if c.selection_scores["pick"] == "random"
    )


def test_by_default_sets_keep_the_usual_order(db):
    # Random selection (the default) gives every set priority 0: the oldest open set goes first, as before.
    ps = make_prompt_set(db)
    first, second = make_comparison_set(db, make_prompt(db, ps)), make_comparison_set(db, make_prompt(db, ps))
    assert (first.selection, first.selection_priority, first.selection_scores) == ("", 0.0, {})
    task = service.next_task(db, get_settings(), make_annotator(db))
    assert task is not None and task.assignment.set_id == first.id != second.id
