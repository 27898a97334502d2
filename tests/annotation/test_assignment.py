"""Handing out ranking tasks: overlap, leases, priorities, hidden candidates, display order."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from app.annotation import service
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.orm import Assignment, AssignmentStatus, Candidate, ComparisonSet, SetStatus
from tests.factories import (
    make_annotator,
    make_comparison_set,
    make_prompt,
    make_prompt_set,
)


def settings():
    return get_settings()


def expire(db, assignment_id: int) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    db.execute(update(Assignment).where(Assignment.id == assignment_id).values(lease_expires_at=past))
    db.expire_all()


def rank_all(db, user, task: service.TaskView) -> None:
    ids = [c.id for c in task.candidates]
    service.submit_ranking(
        db, settings(), user, RankingIn(assignment_id=task.assignment.id, tiers=[[i] for i in ids])
    )


def test_lease_stores_a_permutation_and_a_lease_of_the_configured_length(db):
    cset = make_comparison_set(db, k=4)
    ann = make_annotator(db)
    task = service.next_task(db, settings(), ann)
    assert task is not None
    a = task.assignment
    assert a.set_id == cset.id and a.annotator_id == ann.id and a.status == AssignmentStatus.leased
    assert sorted(a.display_order) == sorted(i.candidate_id for i in cset.items)
    assert [c.id for c in task.candidates] == a.display_order
    lease = a.lease_expires_at - a.leased_at
    assert lease == dt.timedelta(minutes=settings().lease_minutes)


def test_reload_returns_the_same_task_in_the_same_order(db):
    make_comparison_set(db, k=5)
    make_comparison_set(db, k=5)
    ann = make_annotator(db)
    first = service.next_task(db, settings(), ann)
    again = service.next_task(db, settings(), ann)
    assert first is not None and again is not None
    assert again.assignment.id == first.assignment.id
    assert [c.id for c in again.candidates] == [c.id for c in first.candidates]
    assert db.scalar(select(func.count()).select_from(Assignment)) == 1


def test_display_order_is_shuffled_per_annotator(db):
    make_comparison_set(db, k=9, overlap=6)
    orders = set()
    for _ in range(6):
        task = service.next_task(db, settings(), make_annotator(db))
        assert task is not None
        orders.add(tuple(task.assignment.display_order))
    # Six independent shuffles of nine items all equal has probability (1/9!)^5.
    assert len(orders) > 1


def test_a_set_gets_exactly_overlap_distinct_annotators(db):
    cset = make_comparison_set(db, overlap=2)
    a, b, c = make_annotator(db), make_annotator(db), make_annotator(db)
    ta = service.next_task(db, settings(), a)
    tb = service.next_task(db, settings(), b)
    assert ta is not None and tb is not None
    assert ta.assignment.set_id == tb.assignment.set_id == cset.id
    assert service.next_task(db, settings(), c) is None


def test_an_annotator_never_gets_a_set_twice(db):
    make_comparison_set(db, overlap=3)
    ann = make_annotator(db)
    task = service.next_task(db, settings(), ann)
    assert task is not None
    rank_all(db, ann, task)
    assert service.next_task(db, settings(), ann) is None


def test_skipped_set_is_not_offered_again_and_frees_the_slot(db):
    make_comparison_set(db, overlap=1)
    a, b = make_annotator(db), make_annotator(db)
    task = service.next_task(db, settings(), a)
    assert task is not None
    assert service.next_task(db, settings(), b) is None  # the only slot is leased to a
    service.skip_task(db, a, task.assignment.id, "outside my expertise")
    assert service.next_task(db, settings(), a) is None
    tb = service.next_task(db, settings(), b)
    assert tb is not None and tb.assignment.set_id == task.assignment.set_id


def test_expired_lease_frees_the_slot(db):
    make_comparison_set(db, overlap=1)
    a, b = make_annotator(db), make_annotator(db)
    ta = service.next_task(db, settings(), a)
    assert ta is not None
    assert service.next_task(db, settings(), b) is None
    expire(db, ta.assignment.id)
    tb = service.next_task(db, settings(), b)
    assert tb is not None and tb.assignment.set_id == ta.assignment.set_id
    # a's slot is gone now: a gets nothing (the set is full with b's live lease).
    assert service.next_task(db, settings(), a) is None


def test_expired_lease_of_the_same_annotator_is_renewed_in_place(db):
    make_comparison_set(db, overlap=1)
    ann = make_annotator(db)
    first = service.next_task(db, settings(), ann)
    assert first is not None
    order = list(first.assignment.display_order)
    expire(db, first.assignment.id)
    again = service.next_task(db, settings(), ann)
    assert again is not None
    assert again.assignment.id == first.assignment.id
    assert again.assignment.display_order == order
    assert again.assignment.lease_expires_at > dt.datetime.now(dt.UTC)
    assert db.scalar(select(func.count()).select_from(Assignment)) == 1


def test_higher_prompt_set_priority_then_prompt_priority_comes_first(db):
    low_set = make_prompt_set(db, priority=0)
    high_set = make_prompt_set(db, priority=5)
    make_comparison_set(db, make_prompt(db, low_set, priority=100))
    high_low = make_comparison_set(db, make_prompt(db, high_set, priority=0))
    high_high = make_comparison_set(db, make_prompt(db, high_set, priority=3))
    ann = make_annotator(db)
    got = []
    for _ in range(2):
        task = service.next_task(db, settings(), ann)
        assert task is not None
        got.append(task.assignment.set_id)
        rank_all(db, ann, task)
    assert got == [high_high.id, high_low.id]


def test_paused_prompt_sets_are_skipped(db):
    paused = make_prompt_set(db, paused=True, priority=10)
    make_comparison_set(db, make_prompt(db, paused))
    live = make_comparison_set(db)
    task = service.next_task(db, settings(), make_annotator(db))
    assert task is not None and task.assignment.set_id == live.id
    assert service.next_task(db, settings(), make_annotator(db)) is not None  # live has overlap 2
    assert service.next_task(db, settings(), make_annotator(db)) is None


def test_sets_with_rankings_come_before_older_untouched_sets(db):
    older = make_comparison_set(db, overlap=2)
    newer = make_comparison_set(db, overlap=2)
    starter = make_annotator(db)
    # Give the newer set one ranking.
    db.execute(update(ComparisonSet).where(ComparisonSet.id == older.id).values(status=SetStatus.closed))
    task = service.next_task(db, settings(), starter)
    assert task is not None and task.assignment.set_id == newer.id
    rank_all(db, starter, task)
    db.execute(update(ComparisonSet).where(ComparisonSet.id == older.id).values(status=SetStatus.open))
    db.expire_all()
    ann = make_annotator(db)
    task = service.next_task(db, settings(), ann)
    assert task is not None and task.assignment.set_id == newer.id
    # With no rankings anywhere, the oldest set comes first.
    other = make_annotator(db)
    task = service.next_task(db, settings(), other)
    assert task is not None and task.assignment.set_id == older.id


def test_hidden_candidates_are_not_shown_and_sets_with_one_visible_are_skipped(db):
    one_visible = make_comparison_set(db, k=2, hidden=[True, False])
    partly = make_comparison_set(db, k=3, hidden=[False, True, False])
    ann = make_annotator(db)
    task = service.next_task(db, settings(), ann)
    assert task is not None and task.assignment.set_id == partly.id
    shown = db.scalars(select(Candidate).where(Candidate.id.in_([i.candidate_id for i in partly.items])))
    visible = [c.id for c in shown if not c.hidden]
    assert len(visible) == 2 and sorted(task.assignment.display_order) == sorted(visible)
    assert all(not c.hidden for c in task.candidates)
    rank_all(db, ann, task)
    assert service.next_task(db, settings(), ann) is None
    assert one_visible.status == SetStatus.open


def test_sets_with_more_than_nine_candidates_are_not_handed_out(db):
    make_comparison_set(db, k=10)
    nine = make_comparison_set(db, k=9)
    ann = make_annotator(db)
    task = service.next_task(db, settings(), ann)
    assert task is not None and task.assignment.set_id == nine.id
    rank_all(db, ann, task)
    assert service.next_task(db, settings(), ann) is None


def test_closed_sets_are_not_handed_out(db):
    cset = make_comparison_set(db)
    cset.status = SetStatus.closed
    db.flush()
    assert service.next_task(db, settings(), make_annotator(db)) is None


def test_set_closes_when_it_reaches_overlap(db):
    cset = make_comparison_set(db, overlap=2)
    a, b = make_annotator(db), make_annotator(db)
    ta = service.next_task(db, settings(), a)
    tb = service.next_task(db, settings(), b)
    assert ta is not None and tb is not None
    rank_all(db, a, ta)
    db.refresh(cset)
    assert cset.status == SetStatus.open
    rank_all(db, b, tb)
    db.refresh(cset)
    assert cset.status == SetStatus.closed


def test_progress_counts_ranked_today_and_sets_left(db):
    for _ in range(3):
        make_comparison_set(db, overlap=1)
    ann = make_annotator(db)
    assert service.progress(db, ann) == service.Progress(ranked_today=0, left=3)
    task = service.next_task(db, settings(), ann)
    assert task is not None
    # Their own lease still counts as left for them.
    assert service.progress(db, ann).left == 3
    rank_all(db, ann, task)
    assert service.progress(db, ann) == service.Progress(ranked_today=1, left=2)
    # Another annotator's live lease takes the only slot of a set: not left for this one.
    other = make_annotator(db)
    assert service.next_task(db, settings(), other) is not None
    assert service.progress(db, ann).left == 1
