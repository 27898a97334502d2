"""Many annotators at once, each thread with its own session and commits, on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import traceback
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from app.annotation import service
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.db import session_factory, session_scope
from app.errors import Conflict
from app.orm import Assignment, AssignmentStatus, ComparisonSet, Ranking, SetStatus, User
from tests.factories import make_annotator, make_comparison_set

ANNOTATORS = 50
SETS = 60
OVERLAP = 2


@dataclass
class Outcome:
    created: list[int] = field(default_factory=list)  # ranking ids answered 201
    repeats: list[tuple[int, int]] = field(default_factory=list)  # (first id, repeat id)
    late_rejected: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _in_session(fn):
    session = session_factory()()
    try:
        result = fn(session)
        session.commit()
        return result
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _submit(user: User, body: RankingIn) -> service.SubmitResult:
    return _in_session(lambda s: service.submit_ranking(s, get_settings(), user, body, source="api"))


def _annotate(index: int, user: User, start: threading.Barrier, out: Outcome) -> None:
    settings = get_settings()
    abandoned = False
    try:
        start.wait()
        while True:
            task = _in_session(lambda s: service.next_task(s, settings, user))
            if task is None:
                return
            ids = [c.id for c in task.candidates]
            # Every annotator ranks differently, so a repeat answered 200 really is the same answer.
            tiers = [[ids[(i + index) % len(ids)]] for i in range(len(ids))]
            body = RankingIn(assignment_id=task.assignment.id, tiers=tiers, seconds_spent=1.0)
            if index % 7 == 0 and not abandoned:
                # Walk away: the lease runs out, someone else may take the slot, a late submit fails.
                abandoned = True
                with session_scope() as s:
                    s.execute(
                        update(Assignment)
                        .where(Assignment.id == task.assignment.id)
                        .values(lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
                    )
                try:
                    _submit(user, body)
                except Conflict:
                    with out.lock:
                        out.late_rejected += 1
                    continue
                raise AssertionError("a submission on an expired lease was accepted")
            if index % 5 == 0:
                # A double click: the same submission twice at the same moment.
                results: list[service.SubmitResult] = []
                pair = threading.Barrier(2)

                def twice(
                    pair: threading.Barrier = pair,
                    body: RankingIn = body,
                    results: list[service.SubmitResult] = results,
                ) -> None:
                    pair.wait()
                    results.append(_submit(user, body))

                threads = [threading.Thread(target=twice) for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert len(results) == 2, "a concurrent identical submission failed"
                first = next(r for r in results if r.created)
                second = next(r for r in results if r is not first)
                assert not second.created
                with out.lock:
                    out.created.append(first.ranking.id)
                    out.repeats.append((first.ranking.id, second.ranking.id))
                continue
            result = _submit(user, body)
            assert result.created
            with out.lock:
                out.created.append(result.ranking.id)
    except BaseException:
        with out.lock:
            out.errors.append(f"annotator {index}: {traceback.format_exc()}")


def test_fifty_annotators_never_overfill_a_set_and_lose_nothing(clean_db):
    with session_scope() as s:
        users = [make_annotator(s, f"racer-{i}") for i in range(ANNOTATORS)]
        set_ids = [make_comparison_set(s, k=3 + i % 3, overlap=OVERLAP).id for i in range(SETS)]
    out = Outcome()
    start = threading.Barrier(ANNOTATORS)
    threads = [threading.Thread(target=_annotate, args=(i, u, start, out)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an annotator thread hung"
    assert not out.errors, "\n".join(out.errors)

    with session_scope() as s:
        rankings = s.scalars(select(Ranking)).all()
        per_set = Counter(r.set_id for r in rankings)
        statuses = {sid: st for sid, st in s.execute(select(ComparisonSet.id, ComparisonSet.status))}
        submitted = s.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.status == AssignmentStatus.submitted)
        )
    # No set collects more than its overlap; every set got exactly its overlap and is closed.
    assert max(per_set.values()) <= OVERLAP
    assert {sid: per_set[sid] for sid in set_ids} == dict.fromkeys(set_ids, OVERLAP)
    assert all(statuses[sid] == SetStatus.closed for sid in set_ids)
    # Every successful submission is stored exactly once, and nothing else is stored.
    assert len(out.created) == len(set(out.created)) == len(rankings) == submitted
    assert sorted(out.created) == sorted(r.id for r in rankings)
    assert all(first == again for first, again in out.repeats) and out.repeats
    assert out.late_rejected > 0  # the expiry path really ran (a late success would be an error above)
    # Nobody ranked a set twice.
    assert len({(r.set_id, r.annotator_id) for r in rankings}) == len(rankings)


def test_double_click_on_next_leases_only_one_set(clean_db):
    with session_scope() as s:
        users = [make_annotator(s, f"clicker-{i}") for i in range(8)]
        for _ in range(20):
            make_comparison_set(s, overlap=3)
    got: dict[int, list[int]] = {u.id: [] for u in users}
    errors: list[str] = []
    start = threading.Barrier(len(users) * 2)

    def click(user: User) -> None:
        try:
            start.wait()
            task = _in_session(lambda s: service.next_task(s, get_settings(), user))
            assert task is not None
            got[user.id].append(task.assignment.id)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=click, args=(u,)) for u in users for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, "\n".join(errors)
    assert all(len(v) == 2 and v[0] == v[1] for v in got.values()), got
    with session_scope() as s:
        per_user = Counter(s.scalars(select(Assignment.annotator_id)).all())
    assert per_user == dict.fromkeys(got, 1)
