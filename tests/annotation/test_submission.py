"""A submission in one call (rankloop_submit_ranking, migration 0015): it stores exactly what the
step-by-step path would, and for anything but a good submission or its identical repeat it writes nothing
and leaves the answer to that path."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from app.annotation import service
from app.annotation import submission_repository as submission
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.orm import Assignment, AssignmentStatus, ComparisonSet, Project, Ranking, SetStatus
from tests.factories import make_annotator, make_comparison_set


def _leased(db, k: int = 3, overlap: int = 2):  # type: ignore[no-untyped-def]
    cset = make_comparison_set(db, k=k, overlap=overlap)
    ann = make_annotator(db)
    task = service.next_task(db, get_settings(), ann)
    assert task is not None
    return ann, task, cset


def _ids(task: service.TaskView) -> list[int]:
    return [c.id for c in task.candidates]


def _checked(body: RankingIn) -> submission.Submission:
    checked = service._prechecked(body, get_settings(), "api")
    assert checked is not None
    return checked


def _rankings(db) -> int:  # type: ignore[no-untyped-def]
    return db.scalar(select(func.count()).select_from(Ranking))


def test_the_checks_without_the_task_normalise_as_the_full_checks_do(db):
    _, task, _ = _leased(db, k=4)
    a, b, c, d = _ids(task)
    bodies = [
        RankingIn(assignment_id=task.assignment.id, tiers=[[d, b], [c], [a]]),
        RankingIn(
            assignment_id=task.assignment.id,
            tiers=[[c], [b, a, d]],
            all_bad=True,
            flags={f" {d} ": ["unsafe", "incorrect", "unsafe"], str(a): [], str(b): ["incorrect"]},
            rationale="  why \n ",
            seconds_spent=0,
        ),
    ]
    shown = _ids(task)
    flag_types = list(db.scalar(select(Project.flag_types).limit(1)))
    for body in bodies:
        full = service._normalise(body, shown, get_settings(), flag_types)
        checked = _checked(body)
        assert (checked.tiers, checked.all_bad, checked.flags, checked.rationale, checked.seconds_spent) == (
            full.tiers,
            full.all_bad,
            full.flags,
            full.rationale,
            full.seconds_spent,
        )
        assert sorted(checked.ids) == sorted(shown)
        assert checked.fingerprint == service.fingerprint(
            body.assignment_id, full.tiers, full.all_bad, full.flags, full.rationale
        )


@pytest.mark.parametrize(
    "body",
    [
        {"tiers": []},
        {"tiers": [[1], []]},
        {"tiers": [[1], [1]]},
        {"tiers": [[2**31]]},
        {"tiers": [[1]], "flags": {"x": ["unsafe"]}},
        {"tiers": [[1]], "flags": {"1": ["unsafe"], " 1": ["incorrect"]}},
        {"tiers": [[1]], "rationale": "x" * 100_000},
        {"tiers": [[1]], "seconds_spent": -1.0},
    ],
)
def test_what_the_checks_without_the_task_refuse_goes_the_full_way(body):
    # The full path answers these (after "not found", which only the locks can tell).
    assert service._prechecked(RankingIn(assignment_id=1, **body), get_settings(), "api") is None


def test_a_good_submission_is_stored_with_its_assignment_submitted_and_the_set_closed_once_full(db):
    cset = make_comparison_set(db, k=3, overlap=2)
    first, second = make_annotator(db), make_annotator(db)
    tasks = [service.next_task(db, get_settings(), user) for user in (first, second)]
    assert tasks[0] is not None and tasks[1] is not None
    for user, task, closed in ((first, tasks[0], SetStatus.open), (second, tasks[1], SetStatus.closed)):
        body = RankingIn(assignment_id=task.assignment.id, tiers=[[i] for i in _ids(task)], seconds_spent=4)
        done = submission.submit_ranking(db, _checked(body), user.id)
        assert done is not None
        stored, created = done
        assert created
        row = db.get(Ranking, stored.id)
        assert row is not None and row.fingerprint == stored.fingerprint
        assert row.display_order == task.assignment.display_order == stored.display_order
        assert stored.tiers == [[i] for i in _ids(task)] and stored.seconds_spent == 4
        assert stored.server_seconds is not None and stored.server_seconds >= 0
        assert stored.source == "api" and not stored.dropped
        db.refresh(task.assignment)
        assert task.assignment.status == AssignmentStatus.submitted
        assert task.assignment.completed_at is not None
        db.refresh(cset)
        assert cset.status == closed
    assert _rankings(db) == 2


def test_an_identical_repeat_answers_the_stored_ranking_and_writes_nothing(db):
    ann, task, _ = _leased(db)
    a, b, c = _ids(task)
    body = RankingIn(assignment_id=task.assignment.id, tiers=[[a], [b, c]], flags={str(b): ["unsafe"]})
    first = submission.submit_ranking(db, _checked(body), ann.id)
    # Order inside a tie and the reported time make no other answer.
    again_body = RankingIn(
        assignment_id=task.assignment.id, tiers=[[a], [c, b]], flags={str(b): ["unsafe"]}, seconds_spent=7
    )
    again = submission.submit_ranking(db, _checked(again_body), ann.id)
    assert first is not None and again is not None
    assert first[1] and not again[1]
    assert again[0] == first[0]
    assert _rankings(db) == 1


def _refusals(db, ann, task, cset):  # type: ignore[no-untyped-def]
    a, b, c = _ids(task)
    own = task.assignment.id
    other = make_annotator(db)

    def expire() -> None:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        db.execute(update(Assignment).where(Assignment.id == own).values(lease_expires_at=past))

    def close() -> None:
        db.execute(update(ComparisonSet).where(ComparisonSet.id == cset.id).values(status=SetStatus.closed))

    return {
        "someone else's": (other.id, {"tiers": [[a, b, c]]}, None),
        "a candidate left out": (ann.id, {"tiers": [[a], [b]]}, None),
        "a candidate not shown": (ann.id, {"tiers": [[a], [b], [c], [c + 1000]]}, None),
        "a flag on a candidate not shown": (
            ann.id,
            {"tiers": [[a, b, c]], "flags": {str(c + 1000): []}},
            None,
        ),
        "a flag not of the project": (ann.id, {"tiers": [[a, b, c]], "flags": {str(a): ["boring"]}}, None),
        "an expired lease": (ann.id, {"tiers": [[a, b, c]]}, expire),
        "a closed set": (ann.id, {"tiers": [[a, b, c]]}, close),
    }


@pytest.mark.parametrize(
    "case",
    [
        "someone else's",
        "a candidate left out",
        "a candidate not shown",
        "a flag on a candidate not shown",
        "a flag not of the project",
        "an expired lease",
        "a closed set",
    ],
)
def test_anything_else_answers_nothing_and_writes_nothing(db, case):
    ann, task, cset = _leased(db)
    user_id, body, before = _refusals(db, ann, task, cset)[case]
    if before is not None:
        before()
    checked = _checked(RankingIn(assignment_id=task.assignment.id, **body))
    assert submission.submit_ranking(db, checked, user_id) is None
    assert _rankings(db) == 0
    assert db.scalar(select(Assignment.status).where(Assignment.id == task.assignment.id)) == "leased"


def test_a_different_answer_to_a_ranked_task_answers_nothing(db):
    ann, task, _ = _leased(db)
    a, b, c = _ids(task)
    assert submission.submit_ranking(
        db, _checked(RankingIn(assignment_id=task.assignment.id, tiers=[[a], [b], [c]])), ann.id
    )
    other = _checked(RankingIn(assignment_id=task.assignment.id, tiers=[[c], [b], [a]]))
    assert submission.submit_ranking(db, other, ann.id) is None
    assert _rankings(db) == 1
