"""Only admins mark gold sets or read annotators' trust figures; the task an annotator gets does not say
whether it is gold."""

from __future__ import annotations

from app.db import session_scope
from app.orm import Role
from tests.factories import make_comparison_set


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_only_admins_mark_gold_and_tasks_are_blind(app_client, api_token):
    admin, annotator = api_token("boss", Role.admin), api_token("ann", Role.annotator)
    with session_scope() as session:
        cset = make_comparison_set(session, k=3)
        set_id, ids = cset.id, [i.candidate_id for i in cset.items]
    body = {"tiers": [[i] for i in ids]}
    assert (
        app_client.put(
            f"/api/v1/comparison-sets/{set_id}/gold", json=body, headers=_auth(annotator)
        ).status_code
        == 403
    )
    assert app_client.get("/api/v1/gold-sets", headers=_auth(annotator)).status_code == 403
    assert app_client.get("/api/v1/annotators/1/trust", headers=_auth(annotator)).status_code == 403
    bad = {"tiers": [[ids[0]]]}
    assert (
        app_client.put(f"/api/v1/comparison-sets/{set_id}/gold", json=bad, headers=_auth(admin)).status_code
        == 422
    )
    resp = app_client.put(f"/api/v1/comparison-sets/{set_id}/gold", json=body, headers=_auth(admin))
    assert resp.status_code == 200 and resp.json()["tiers"] == body["tiers"]
    listed = app_client.get("/api/v1/gold-sets", headers=_auth(admin)).json()["gold_sets"]
    assert [g["set_id"] for g in listed] == [set_id]
    # The annotator's task (gold at the default rate or not) carries no trace of gold.
    task = app_client.get("/api/v1/tasks/next", headers=_auth(annotator))
    if task.status_code == 200:
        assert "gold" not in task.text
    assert (
        app_client.delete(f"/api/v1/comparison-sets/{set_id}/gold", headers=_auth(admin)).status_code == 204
    )
    assert app_client.get("/api/v1/gold-sets", headers=_auth(admin)).json()["gold_sets"] == []


def test_admins_list_open_ordinary_sets_to_choose_gold_from(app_client, api_token):
    admin, annotator = api_token("boss", Role.admin), api_token("ann", Role.annotator)
    with session_scope() as session:
        first, second = make_comparison_set(session, k=2), make_comparison_set(session, k=3)
        first_id, second_id = first.id, second.id
        ids = [i.candidate_id for i in second.items]
    assert app_client.get("/api/v1/comparison-sets", headers=_auth(annotator)).status_code == 403
    listed = app_client.get("/api/v1/comparison-sets", headers=_auth(admin)).json()["sets"]
    assert [s["set_id"] for s in listed] == [second_id, first_id]
    assert [c["id"] for c in listed[0]["candidates"]] == ids and listed[0]["prompt"]
    body = {"tiers": [[i] for i in ids]}
    assert app_client.put(
        f"/api/v1/comparison-sets/{second_id}/gold", json=body, headers=_auth(admin)
    ).is_success
    after = app_client.get("/api/v1/comparison-sets", params={"limit": 5}, headers=_auth(admin)).json()
    assert [s["set_id"] for s in after["sets"]] == [first_id]
