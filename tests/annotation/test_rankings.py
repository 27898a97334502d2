"""Storing rankings and skips: validation, idempotency, leases; and the server-rendered ranking page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select, update

from app.annotation import service
from app.annotation.schemas import MAX_SKIP_REASON_CHARS, RankingIn, ranking_from_form
from app.config import get_settings
from app.db import session_scope
from app.errors import Conflict, Invalid, NotFound
from app.orm import Assignment, AssignmentStatus, ComparisonSet, Ranking, SetStatus, Skip
from tests.conftest import csrf_from, login
from tests.factories import make_annotator, make_comparison_set, make_prompt

# ---------------------------------------------------------------- service


def settings():
    return get_settings()


def leased(db, k: int = 3, overlap: int = 2):
    make_comparison_set(db, k=k, overlap=overlap)
    ann = make_annotator(db)
    task = service.next_task(db, settings(), ann)
    assert task is not None
    return ann, task


def ids(task: service.TaskView) -> list[int]:
    return [c.id for c in task.candidates]


def counts(db) -> tuple[int, int]:
    return (
        db.scalar(select(func.count()).select_from(Ranking)),
        db.scalar(select(func.count()).select_from(Skip)),
    )


def test_submission_stores_tiers_display_order_time_and_fingerprint(db):
    ann, task = leased(db, k=4)
    a, b, c, d = ids(task)
    result = service.submit_ranking(
        db,
        settings(),
        ann,
        RankingIn(
            assignment_id=task.assignment.id,
            tiers=[[c], [b, a], [d]],
            flags={str(d): ["unsafe", "incorrect", "unsafe"]},
            rationale="  c is the only correct one  ",
            seconds_spent=42.5,
        ),
    )
    r = result.ranking
    assert result.created
    assert r.tiers == [[c], sorted([a, b]), [d]]
    assert r.flags == {str(d): ["incorrect", "unsafe"]}
    assert r.rationale == "c is the only correct one"
    assert r.display_order == task.assignment.display_order
    assert r.seconds_spent == 42.5
    assert r.annotator_id == ann.id and r.set_id == task.assignment.set_id
    assert len(r.fingerprint) == 64
    assert task.assignment.status == AssignmentStatus.submitted
    assert task.assignment.completed_at is not None


def test_the_server_measures_the_time_from_lease_to_submission_whatever_the_client_claims(db):
    ann, task = leased(db)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90)
    db.execute(update(Assignment).where(Assignment.id == task.assignment.id).values(leased_at=earlier))
    db.expire_all()
    r = service.submit_ranking(
        db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)], seconds_spent=2)
    ).ranking
    assert r.server_seconds is not None and 89 <= r.server_seconds < 600
    assert r.seconds_spent == 2  # the client's claim, kept beside it


def test_without_a_client_figure_only_the_server_one_is_stored(db):
    ann, task = leased(db)
    r = service.submit_ranking(
        db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)])
    ).ranking
    assert r.seconds_spent is None
    assert r.server_seconds is not None and 0 <= r.server_seconds < 60


def test_identical_repeat_is_answered_with_the_stored_ranking(db):
    ann, task = leased(db)
    a, b, c = ids(task)
    body = dict(assignment_id=task.assignment.id, tiers=[[a], [b, c]], flags={str(a): ["unsafe"]})
    first = service.submit_ranking(db, settings(), ann, RankingIn(**body, seconds_spent=3))
    # Order inside a tie and the reported time do not make it a different answer.
    body["tiers"] = [[a], [c, b]]
    again = service.submit_ranking(db, settings(), ann, RankingIn(**body, seconds_spent=9))
    assert first.created and not again.created
    assert again.ranking.id == first.ranking.id
    assert counts(db) == (1, 0)


def test_different_answer_for_a_ranked_task_is_a_conflict(db):
    ann, task = leased(db)
    a, b, c = ids(task)
    service.submit_ranking(
        db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[[a], [b], [c]])
    )
    with pytest.raises(Conflict):
        service.submit_ranking(
            db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[[c], [b], [a]])
        )
    assert counts(db) == (1, 0)


def test_repeat_after_the_lease_expired_is_still_recognised(db):
    ann, task = leased(db)
    body = RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)])
    first = service.submit_ranking(db, settings(), ann, body)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    db.execute(update(Assignment).where(Assignment.id == task.assignment.id).values(lease_expires_at=past))
    db.expire_all()
    assert service.submit_ranking(db, settings(), ann, body).ranking.id == first.ranking.id


BAD_SUBMISSIONS = {
    "missing candidate": lambda a, b, c: {"tiers": [[a], [b]]},
    "duplicate": lambda a, b, c: {"tiers": [[a], [b], [c, a]]},
    "unknown candidate": lambda a, b, c: {"tiers": [[a], [b], [c], [999_999]]},
    "empty tier": lambda a, b, c: {"tiers": [[a], [], [b, c]]},
    "no tiers": lambda a, b, c: {"tiers": []},
    "unknown flag": lambda a, b, c: {"tiers": [[a, b, c]], "flags": {str(a): ["boring"]}},
    "flag for a foreign candidate": lambda a, b, c: {"tiers": [[a, b, c]], "flags": {"999999": ["unsafe"]}},
    "flag key not an id": lambda a, b, c: {"tiers": [[a, b, c]], "flags": {"x": ["unsafe"]}},
    "rationale too long": lambda a, b, c: {"tiers": [[a, b, c]], "rationale": "x" * 5001},
    "negative time": lambda a, b, c: {"tiers": [[a, b, c]], "seconds_spent": -1},
    "infinite time": lambda a, b, c: {"tiers": [[a, b, c]], "seconds_spent": float("inf")},
    "not a number time": lambda a, b, c: {"tiers": [[a, b, c]], "seconds_spent": float("nan")},
}


@pytest.mark.parametrize("case", sorted(BAD_SUBMISSIONS))
def test_invalid_submissions_are_rejected_and_nothing_is_written(db, case):
    ann, task = leased(db)
    body = BAD_SUBMISSIONS[case](*ids(task))
    with pytest.raises(Invalid) as info:
        service.submit_ranking(db, settings(), ann, RankingIn(assignment_id=task.assignment.id, **body))
    assert info.value.status_code == 422 and info.value.message
    assert counts(db) == (0, 0)
    db.refresh(task.assignment)
    assert task.assignment.status == AssignmentStatus.leased


def test_expired_lease_cannot_be_submitted(db):
    ann, task = leased(db, overlap=1)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    db.execute(update(Assignment).where(Assignment.id == task.assignment.id).values(lease_expires_at=past))
    db.expire_all()
    with pytest.raises(Conflict, match="ran out"):
        service.submit_ranking(
            db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)])
        )
    assert counts(db) == (0, 0)


def test_someone_elses_assignment_does_not_exist_for_you(db):
    owner, task = leased(db)
    intruder = make_annotator(db)
    body = RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)])
    with pytest.raises(NotFound):
        service.submit_ranking(db, settings(), intruder, body)
    with pytest.raises(NotFound):
        service.skip_task(db, intruder, task.assignment.id, "nope")
    with pytest.raises(NotFound):
        service.get_task(db, intruder, task.assignment.id)
    with pytest.raises(NotFound):
        service.submit_ranking(db, settings(), owner, RankingIn(assignment_id=987_654, tiers=[[1]]))
    assert counts(db) == (0, 0)


def test_retired_set_cannot_be_ranked(db):
    ann, task = leased(db)
    db.execute(
        update(ComparisonSet)
        .where(ComparisonSet.id == task.assignment.set_id)
        .values(status=SetStatus.closed)
    )
    db.expire_all()
    with pytest.raises(Conflict):
        service.submit_ranking(
            db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)])
        )
    assert counts(db) == (0, 0)


def test_skip_records_the_reason_and_is_idempotent(db):
    ann, task = leased(db)
    first = service.skip_task(db, ann, task.assignment.id, "  prompt is in a language I don't read ")
    assert first.created and first.skip.reason == "prompt is in a language I don't read"
    assert task.assignment.status == AssignmentStatus.skipped
    again = service.skip_task(db, ann, task.assignment.id, "something else")
    assert not again.created and again.skip.id == first.skip.id
    assert counts(db) == (0, 1)
    with pytest.raises(Conflict, match="skipped"):
        service.submit_ranking(
            db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)])
        )


@pytest.mark.parametrize("reason", ["", "   \n", "x" * (MAX_SKIP_REASON_CHARS + 1)])
def test_skip_needs_a_short_non_empty_reason(db, reason):
    ann, task = leased(db)
    with pytest.raises(Invalid):
        service.skip_task(db, ann, task.assignment.id, reason)
    assert counts(db) == (0, 0)
    assert task.assignment.status == AssignmentStatus.leased


def test_ranked_task_cannot_be_skipped(db):
    ann, task = leased(db)
    service.submit_ranking(
        db, settings(), ann, RankingIn(assignment_id=task.assignment.id, tiers=[ids(task)])
    )
    with pytest.raises(Conflict):
        service.skip_task(db, ann, task.assignment.id, "changed my mind")
    assert counts(db) == (1, 0)


def test_form_ranks_become_tiers_with_ties_and_gaps():
    data = ranking_from_form(7, ["11:2", "12:1", "13:2", "14:4"], ["13:unsafe"], True, "why", 5.0)
    assert data.tiers == [[12], [11, 13], [14]]
    assert data.flags == {"13": ["unsafe"]}
    assert data.all_bad and data.rationale == "why" and data.seconds_spent == 5.0
    assert ranking_from_form(7, ["11:", "12:1"], [], False, "", None).tiers == [[12]]


@pytest.mark.parametrize(
    "rank", [["nonsense"], ["11:first"], [":1"], [f"{i}:1" for i in range(11)] + ["x:1"]]
)
def test_malformed_form_fields_are_invalid(rank):
    with pytest.raises(Invalid):
        ranking_from_form(7, rank, [], False, "", None)


def test_fingerprint_is_canonical_but_tells_answers_apart():
    fp = service.fingerprint
    tiers = [[1, 2], [3]]
    # Key order of the flags map is not part of the answer.
    assert fp(1, tiers, False, {"3": ["unsafe"], "10": ["incorrect"]}, "") == fp(
        1, tiers, False, {"10": ["incorrect"], "3": ["unsafe"]}, ""
    )
    base = fp(1, tiers, False, {}, "")
    assert base != fp(1, tiers, True, {}, "")
    assert base != fp(1, [[3], [1, 2]], False, {}, "")
    assert base != fp(2, tiers, False, {}, "")
    assert base != fp(1, tiers, False, {"3": ["unsafe"]}, "")
    assert base != fp(1, tiers, False, {}, "because")


# ---------------------------------------------------------------- ranking page (server side)

HX = {"HX-Request": "true"}


def seed_sets(
    n: int, texts: list[str] | None = None, overlap: int = 1, prompt_text: str | None = None
) -> None:
    with session_scope() as s:
        for _ in range(n):
            make_comparison_set(s, make_prompt(s, text=prompt_text), texts=texts, overlap=overlap)


def logged_in(app_client, make_user, name: str = "ann") -> None:
    user, pw = make_user(name)
    login(app_client, user, pw)


def assignment_id_in(html: str) -> int:
    m = re.search(r'data-assignment="(\d+)"', html)
    assert m, "no task on the page"
    return int(m.group(1))


def candidate_ids_in(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<li class="cand"[^>]*data-id="(\d+)"', html)]


def test_page_shows_prompt_and_candidates_escaped_in_stored_order_without_model_names(app_client, make_user):
    seed_sets(
        1, texts=["<script>alert(1)</script>", "**bold** & plain", "third"], prompt_text="Say <b>hi</b>"
    )
    logged_in(app_client, make_user)
    page = app_client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Say &lt;b&gt;hi&lt;/b&gt;" in html
    assert "model-" not in html and "test-base" not in html
    aid = assignment_id_in(html)
    with session_scope() as s:
        order = s.get(Assignment, aid).display_order
    assert candidate_ids_in(html) == order
    assert "<kbd>" in html and "<details" in html and 'href="/static/css/rank.css"' in html
    # Reload: the same task in the same order.
    again = app_client.get("/").text
    assert assignment_id_in(again) == aid and candidate_ids_in(again) == order


def test_fragment_route_serves_fragment_for_htmx_and_full_page_otherwise(app_client, make_user):
    seed_sets(1)
    logged_in(app_client, make_user)
    full = app_client.get("/tasks/next").text
    frag = app_client.get("/tasks/next", headers=HX).text
    assert "<html" in full and 'id="task"' in full
    assert "<html" not in frag and frag.lstrip().startswith('<section id="task"')


def test_form_submission_with_a_tie_stores_it_and_returns_the_next_task(app_client, make_user):
    seed_sets(2)
    logged_in(app_client, make_user)
    html = app_client.get("/").text
    aid, cands = assignment_id_in(html), candidate_ids_in(html)
    a, b, c = cands
    resp = app_client.post(
        f"/tasks/{aid}/rank",
        data={
            "csrf_token": csrf_from(html),
            "rank": [f"{a}:2", f"{b}:1", f"{c}:2"],
            "flag": [f"{c}:incorrect"],
            "all_bad": "true",
            "rationale": "b answers the question",
            "seconds_spent": "12.5",
        },
        headers=HX,
    )
    assert resp.status_code == 200
    assert "<html" not in resp.text
    next_aid = assignment_id_in(resp.text)
    assert next_aid != aid
    assert "Saved" in resp.text
    with session_scope() as s:
        r = s.scalars(select(Ranking)).one()
        assert (r.assignment_id, r.tiers, r.flags, r.all_bad) == (
            aid,
            [[b], sorted([a, c])],
            {str(c): ["incorrect"]},
            True,
        )
        assert r.seconds_spent == 12.5 and r.source == "web"


def test_skip_from_the_page_then_all_done(app_client, make_user):
    seed_sets(1)
    logged_in(app_client, make_user)
    html = app_client.get("/").text
    aid = assignment_id_in(html)
    resp = app_client.post(
        f"/tasks/{aid}/skip", data={"csrf_token": csrf_from(html), "reason": "prompt is unclear"}, headers=HX
    )
    assert resp.status_code == 200
    assert "All done" in resp.text and "data-assignment" not in resp.text
    with session_scope() as s:
        skip = s.scalars(select(Skip)).one()
        assert (skip.assignment_id, skip.reason) == (aid, "prompt is unclear")


def test_page_errors_are_4xx_with_a_message_and_write_nothing(app_client, make_user):
    seed_sets(1)
    logged_in(app_client, make_user)
    html = app_client.get("/").text
    aid, (a, b, c) = assignment_id_in(html), candidate_ids_in(html)
    token = csrf_from(html)
    bad = [
        {"rank": [f"{a}:1", f"{b}:2"]},  # c unranked
        {"rank": [f"{a}:1", f"{b}:2", f"{c}:3"], "flag": [f"{a}:great"]},
        {"rank": [f"{a}:1", f"{b}:2", f"{c}:x"]},
        {"rank": [f"{a}:1", f"{b}:2", f"{c}:3"], "rationale": "r" * 5001},
    ]
    for fields in bad:
        resp = app_client.post(f"/tasks/{aid}/rank", data={"csrf_token": token, **fields}, headers=HX)
        assert resp.status_code == 422, fields
        assert 'class="error"' in resp.text
    resp = app_client.post(f"/tasks/{aid}/skip", data={"csrf_token": token, "reason": "  "}, headers=HX)
    assert resp.status_code == 422
    # Without the CSRF token the post is refused.
    resp = app_client.post(f"/tasks/{aid}/rank", data={"rank": [f"{a}:1", f"{b}:1", f"{c}:1"]})
    assert resp.status_code == 403
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Ranking)) == 0
        assert s.scalar(select(func.count()).select_from(Skip)) == 0
        assert s.get(Assignment, aid).status == AssignmentStatus.leased


def test_all_done_page_when_nothing_is_left(app_client, make_user):
    logged_in(app_client, make_user)
    page = app_client.get("/")
    assert page.status_code == 200 and "All done" in page.text


def test_ranking_page_requires_login(app_client):
    assert app_client.get("/", follow_redirects=False).status_code == 303
    assert app_client.get("/tasks/next", headers=HX, follow_redirects=False).headers.get("HX-Redirect")
