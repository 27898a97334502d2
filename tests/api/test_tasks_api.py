"""The tasks JSON API through the real app: bearer tokens and session cookies, the same rules as the pages."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from app.db import session_scope
from app.orm import Assignment, AssignmentStatus, ComparisonSet, Ranking, SetStatus, Skip
from tests.conftest import csrf_from, login
from tests.factories import make_comparison_set, make_prompt


def seed(n: int = 1, k: int = 3, overlap: int = 2) -> list[int]:
    with session_scope() as s:
        return [
            make_comparison_set(s, make_prompt(s, text=f"Question {i}?"), k=k, overlap=overlap).id
            for i in range(n)
        ]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored() -> tuple[int, int]:
    with session_scope() as s:
        return (
            s.scalar(select(func.count()).select_from(Ranking)),
            s.scalar(select(func.count()).select_from(Skip)),
        )


def next_task(client, headers) -> dict:
    resp = client.get("/api/v1/tasks/next", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_next_task_returns_candidates_in_display_order_and_is_stable(app_client, api_token):
    seed(2, k=4)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    assert set(task) == {
        "assignment_id",
        "project_id",
        "flag_types",
        "prompt",
        "messages",
        "candidates",
        "lease_expires_at",
    }
    assert task["messages"] is None
    assert task["prompt"].startswith("Question")
    assert all(set(c) == {"id", "text", "truncated"} and c["truncated"] is False for c in task["candidates"])
    with session_scope() as s:
        a = s.get(Assignment, task["assignment_id"])
        assert [c["id"] for c in task["candidates"]] == a.display_order
    assert dt.datetime.fromisoformat(task["lease_expires_at"]) > dt.datetime.now(dt.UTC)
    assert next_task(app_client, h) == task


def test_next_task_is_204_when_nothing_is_left(app_client, api_token):
    resp = app_client.get("/api/v1/tasks/next", headers=auth(api_token("ann")))
    assert resp.status_code == 204 and resp.content == b""


def test_submit_is_201_then_200_on_identical_repeat_and_409_on_a_different_one(app_client, api_token):
    seed(1)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    a, b, c = (x["id"] for x in task["candidates"])
    body = {
        "assignment_id": task["assignment_id"],
        "tiers": [[b], [a, c]],
        "all_bad": False,
        "flags": {str(c): ["unsafe"]},
        "rationale": "b is right",
        "seconds_spent": 17.2,
    }
    first = app_client.post("/api/v1/rankings", json=body, headers=h)
    assert first.status_code == 201, first.text
    out = first.json()
    assert out["assignment_id"] == task["assignment_id"]
    assert out["tiers"] == [[b], sorted([a, c])]
    assert out["flags"] == {str(c): ["unsafe"]} and out["source"] == "api"
    assert out["display_order"] == [x["id"] for x in task["candidates"]]
    repeat = app_client.post("/api/v1/rankings", json={**body, "seconds_spent": 30}, headers=h)
    assert repeat.status_code == 200 and repeat.json()["id"] == out["id"]
    other = app_client.post("/api/v1/rankings", json={**body, "tiers": [[a], [b], [c]]}, headers=h)
    assert other.status_code == 409 and "different" in other.json()["detail"]
    assert stored() == (1, 0)
    with session_scope() as s:
        assert s.get(Assignment, task["assignment_id"]).status == AssignmentStatus.submitted


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda ids: {"tiers": [[ids[0]], [ids[1]]]}, id="missing"),
        pytest.param(lambda ids: {"tiers": [[ids[0]], [ids[1]], [ids[2], ids[0]]]}, id="duplicate"),
        pytest.param(lambda ids: {"tiers": [[ids[0]], [ids[1]], [ids[2]], [424242]]}, id="unknown"),
        pytest.param(lambda ids: {"tiers": [[ids[0]], [], [ids[1], ids[2]]]}, id="empty-tier"),
        pytest.param(lambda ids: {"tiers": []}, id="no-tiers"),
        pytest.param(lambda ids: {"tiers": "a,b,c"}, id="tiers-not-a-list"),
        pytest.param(lambda ids: {"flags": {str(ids[0]): ["boring"]}}, id="bad-flag"),
        pytest.param(lambda ids: {"flags": {"424242": ["unsafe"]}}, id="flag-foreign-candidate"),
        pytest.param(lambda ids: {"rationale": "x" * 5001}, id="rationale-too-long"),
        pytest.param(lambda ids: {"seconds_spent": -3}, id="negative-seconds"),
        pytest.param(lambda ids: {"all_bad": "maybe"}, id="all-bad-not-bool"),
        pytest.param(lambda ids: {"surprise": 1}, id="unknown-field"),
        pytest.param(lambda ids: {"tiers": [[i] for i in range(10)]}, id="too-many-tiers"),
    ],
)
def test_invalid_submissions_are_422_with_a_message_and_write_nothing(app_client, api_token, change):
    seed(1)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    ids = [x["id"] for x in task["candidates"]]
    body = {"assignment_id": task["assignment_id"], "tiers": [[i] for i in ids], **change(ids)}
    resp = app_client.post("/api/v1/rankings", json=body, headers=h)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"]
    assert stored() == (0, 0)
    with session_scope() as s:
        assert s.get(Assignment, task["assignment_id"]).status == AssignmentStatus.leased


def test_expired_lease_is_409_and_the_slot_goes_to_someone_else(app_client, api_token):
    seed(1, overlap=1)
    h1, h2 = auth(api_token("ann")), auth(api_token("bob"))
    task = next_task(app_client, h1)
    assert app_client.get("/api/v1/tasks/next", headers=h2).status_code == 204
    with session_scope() as s:
        s.execute(
            update(Assignment)
            .where(Assignment.id == task["assignment_id"])
            .values(lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    bob_task = next_task(app_client, h2)
    assert [c["id"] for c in bob_task["candidates"]] != [] and bob_task["prompt"] == task["prompt"]
    ids = [c["id"] for c in task["candidates"]]
    late = app_client.post(
        "/api/v1/rankings", json={"assignment_id": task["assignment_id"], "tiers": [ids]}, headers=h1
    )
    assert late.status_code == 409 and "ran out" in late.json()["detail"]
    ok = app_client.post(
        "/api/v1/rankings",
        json={
            "assignment_id": bob_task["assignment_id"],
            "tiers": [[c["id"] for c in bob_task["candidates"]]],
        },
        headers=h2,
    )
    assert ok.status_code == 201
    assert stored() == (1, 0)
    with session_scope() as s:
        assert s.scalars(select(ComparisonSet)).one().status == SetStatus.closed


def test_annotators_cannot_see_or_change_each_others_assignments(app_client, api_token):
    seed(1)
    owner, intruder = auth(api_token("ann")), auth(api_token("eve"))
    task = next_task(app_client, owner)
    aid = task["assignment_id"]
    ids = [c["id"] for c in task["candidates"]]
    assert app_client.get(f"/api/v1/tasks/{aid}", headers=owner).json() == task
    assert app_client.get(f"/api/v1/tasks/{aid}", headers=intruder).status_code == 404
    r = app_client.post("/api/v1/rankings", json={"assignment_id": aid, "tiers": [ids]}, headers=intruder)
    assert r.status_code == 404
    r = app_client.post(f"/api/v1/tasks/{aid}/skip", json={"reason": "mine now"}, headers=intruder)
    assert r.status_code == 404
    assert stored() == (0, 0)


def test_skip_frees_the_task_and_needs_a_reason(app_client, api_token):
    seed(2)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    aid = task["assignment_id"]
    for body in ({"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {}, {"reason": "ok", "extra": 1}):
        assert app_client.post(f"/api/v1/tasks/{aid}/skip", json=body, headers=h).status_code == 422, body
    assert stored() == (0, 0)
    r = app_client.post(f"/api/v1/tasks/{aid}/skip", json={"reason": "not my language"}, headers=h)
    assert r.status_code == 200
    assert r.json()["assignment_id"] == aid and r.json()["reason"] == "not my language"
    assert stored() == (0, 1)
    nxt = next_task(app_client, h)
    assert nxt["assignment_id"] != aid
    ids = [c["id"] for c in task["candidates"]]
    r = app_client.post("/api/v1/rankings", json={"assignment_id": aid, "tiers": [ids]}, headers=h)
    assert r.status_code == 409


def test_api_requires_authentication(app_client):
    seed(1)
    assert app_client.get("/api/v1/tasks/next").status_code == 401
    assert app_client.post("/api/v1/rankings", json={"assignment_id": 1, "tiers": [[1]]}).status_code in (
        401,
        403,
    )
    assert app_client.get("/api/v1/tasks/next", headers=auth("rl_not_a_token")).status_code == 401


def test_session_cookie_needs_the_csrf_header_for_posts(app_client, make_user):
    seed(1)
    name, pw = make_user("ann")
    login(app_client, name, pw)
    task = next_task(app_client, {})
    body = {"assignment_id": task["assignment_id"], "tiers": [[c["id"] for c in task["candidates"]]]}
    assert app_client.post("/api/v1/rankings", json=body).status_code == 403
    assert stored() == (0, 0)
    token = csrf_from(app_client.get("/").text)
    r = app_client.post("/api/v1/rankings", json=body, headers={"X-CSRF-Token": token})
    assert r.status_code == 201


def test_openapi_documents_the_task_endpoints_with_response_models(app_client):
    spec = app_client.get("/openapi.json").json()
    paths = spec["paths"]
    nxt = paths["/api/v1/tasks/next"]["get"]["responses"]
    assert "TaskOut" in nxt["200"]["content"]["application/json"]["schema"]["$ref"]
    assert "204" in nxt
    post = paths["/api/v1/rankings"]["post"]
    assert "RankingIn" in post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert {"200", "201", "422"} <= set(post["responses"])
    assert "RankingOut" in post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    skip = paths["/api/v1/tasks/{assignment_id}/skip"]["post"]
    assert "SkipOut" in skip["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["TaskOut"]["properties"]) == {
        "assignment_id",
        "project_id",
        "flag_types",
        "prompt",
        "messages",
        "candidates",
        "lease_expires_at",
    }
