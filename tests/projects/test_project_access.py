"""Per-project authorisation: an annotator of project A gets nothing of project B, on pages and API alike;
admins see every project."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete

from app.auth import service as auth_service
from app.db import session_scope
from app.orm import Assignment, AssignmentStatus, ModelKind, ProjectMember, Role
from app.projects import service as projects
from tests.conftest import login
from tests.factories import (
    make_comparison_set,
    make_model_version,
    make_project,
    make_prompt,
    make_prompt_set,
)


@pytest.fixture
def two_projects(clean_db):
    """Projects A and B with three open sets each; "ann" is a member of A only, "boss" an admin."""
    with session_scope() as s:
        a = make_project(
            s, "alpha", guidelines="Prefer **short** answers.", flag_types=["toxic", "off-topic"]
        )
        b = make_project(s, "beta")
        sets: dict[str, list[int]] = {"alpha": [], "beta": []}
        for project in (a, b):
            ps = make_prompt_set(s, f"{project.name}-prompts", project=project)
            for i in range(3):
                prompt = make_prompt(s, ps, text=f"{project.name} question {i}?")
                sets[project.name].append(make_comparison_set(s, prompt, k=3).id)
            make_model_version(s, f"{project.name}-policy", project=project)
        ann, _ = auth_service.create_user(s, "ann", Role.annotator, "correct-horse-1")
        # New accounts join the default project; ann works on alpha only.
        s.execute(delete(ProjectMember).where(ProjectMember.user_id == ann.id))
        projects.add_member(s, a.id, ann.id)
        boss, _ = auth_service.create_user(s, "boss", Role.admin, "correct-horse-1")
        ids = {"alpha": a.id, "beta": b.id, "ann": ann.id}
        tokens = {
            "ann": auth_service.issue_api_token(s, ann, "t"),
            "boss": auth_service.issue_api_token(s, boss, "t"),
        }
    return ids, sets, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_annotator_is_handed_only_their_projects_tasks(app_client, two_projects):
    ids, sets, tokens = two_projects
    h = auth(tokens["ann"])
    seen = []
    while (resp := app_client.get("/api/v1/tasks/next", headers=h)).status_code == 200:
        task = resp.json()
        assert task["project_id"] == ids["alpha"]
        assert task["prompt"].startswith("alpha")
        assert task["flag_types"] == ["toxic", "off-topic"]
        seen.append(task["assignment_id"])
        skipped = app_client.post(
            f"/api/v1/tasks/{task['assignment_id']}/skip", headers=h, json={"reason": "x"}
        )
        assert skipped.status_code == 200
    assert resp.status_code == 204
    assert len(seen) == len(sets["alpha"])
    # Asking for the other project by id answers as if it did not exist.
    assert app_client.get(f"/api/v1/tasks/next?project={ids['beta']}", headers=h).status_code == 404
    assert app_client.get(f"/api/v1/tasks/next?project={ids['alpha']}", headers=h).status_code == 204


def test_an_annotator_sees_only_their_projects_and_nothing_of_the_others(app_client, two_projects):
    ids, _, tokens = two_projects
    h = auth(tokens["ann"])
    listed = app_client.get("/api/v1/projects", headers=h).json()["projects"]
    assert [p["name"] for p in listed] == ["alpha"]
    assert app_client.get(f"/api/v1/projects/{ids['alpha']}", headers=h).status_code == 200
    assert app_client.get(f"/api/v1/projects/{ids['beta']}", headers=h).status_code == 404
    # Exports, versions, rounds and imports are admins' (403 whatever the project), members' lists 403 too.
    for url in (
        f"/api/v1/exports/rankings.jsonl?project={ids['beta']}",
        f"/api/v1/exports/pairs.jsonl?project={ids['beta']}",
        f"/api/v1/model-versions?project={ids['beta']}",
        f"/api/v1/rounds?project={ids['beta']}",
        f"/api/v1/projects/{ids['beta']}/members",
    ):
        assert app_client.get(url, headers=h).status_code in (403, 404), url
    assert (
        app_client.patch(f"/api/v1/projects/{ids['alpha']}", headers=h, json={"guidelines": "x"}).status_code
        == 403
    )


def test_a_lease_of_a_project_the_annotator_left_can_be_neither_seen_nor_ranked(app_client, two_projects):
    ids, sets, tokens = two_projects
    with session_scope() as s:
        now = dt.datetime.now(dt.UTC)
        stale = Assignment(
            set_id=sets["beta"][0],
            annotator_id=ids["ann"],
            status=AssignmentStatus.leased,
            display_order=[],
            leased_at=now,
            lease_expires_at=now + dt.timedelta(minutes=30),
        )
        s.add(stale)
        s.flush()
        stale_id = stale.id
    h = auth(tokens["ann"])
    assert app_client.get(f"/api/v1/tasks/{stale_id}", headers=h).status_code == 404
    body = {"assignment_id": stale_id, "tiers": [[1], [2]]}
    assert app_client.post("/api/v1/rankings", headers=h, json=body).status_code == 404
    assert (
        app_client.post(f"/api/v1/tasks/{stale_id}/skip", headers=h, json={"reason": "x"}).status_code == 404
    )
    # Nor is it the task the page or the API hands back as "your current lease".
    task = app_client.get("/api/v1/tasks/next", headers=h).json()
    assert task["project_id"] == ids["alpha"]


def test_the_ranking_page_shows_only_the_annotators_projects(app_client, two_projects):
    ids, _, _ = two_projects
    login(app_client, "ann", "correct-horse-1")
    page = app_client.get("/")
    assert page.status_code == 200
    assert "alpha question" in page.text and "beta question" not in page.text
    assert app_client.get(f"/?project={ids['beta']}").status_code == 404
    assert app_client.get("/admin").status_code == 403


def test_an_admin_sees_every_project_and_is_handed_any_projects_tasks(app_client, two_projects):
    ids, _, tokens = two_projects
    h = auth(tokens["boss"])
    names = [p["name"] for p in app_client.get("/api/v1/projects", headers=h).json()["projects"]]
    assert {"alpha", "beta"} <= set(names)
    task = app_client.get(f"/api/v1/tasks/next?project={ids['beta']}", headers=h).json()
    assert task["project_id"] == ids["beta"]
    versions = app_client.get(f"/api/v1/model-versions?project={ids['beta']}", headers=h).json()["versions"]
    assert [v["name"] for v in versions] == ["beta-policy"]
    assert all(v["kind"] != ModelKind.reward for v in versions)


def test_openapi_describes_the_project_parameter_and_the_projects_resource(app_client):
    paths = app_client.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/api/v1/tasks/next", "get"),
        ("/api/v1/rounds", "get"),
        ("/api/v1/rounds", "post"),
        ("/api/v1/generations", "post"),
        ("/api/v1/model-versions", "get"),
        ("/api/v1/exports/rankings.jsonl", "get"),
        ("/api/v1/exports/pairs.jsonl", "get"),
        ("/api/v1/imports", "post"),
    ):
        params = {p["name"] for p in paths[path][method].get("parameters", [])}
        assert "project" in params, (path, method)
    assert {"get", "post"} <= set(paths["/api/v1/projects"])
    assert {"get", "patch"} <= set(paths["/api/v1/projects/{project_id}"])
    assert {"put", "delete"} <= set(paths["/api/v1/projects/{project_id}/members/{user_id}"])
