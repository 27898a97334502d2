"""Names per project (migration 0011): two projects may each have a prompt set "imported" and an external
version "gpt"; each project's imports write into, and its pages show, only its own."""

from __future__ import annotations

import json

from sqlalchemy import select

from app.auth import service as auth_service
from app.db import session_scope
from app.orm import ModelKind, ModelVersion, PromptSet, Role
from tests.conftest import csrf_from, login
from tests.factories import make_project


def jsonl(*objs: object) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode()


def groups(prompt: str, model: str) -> bytes:
    """Two ranked groups: one written by `model`, one by "gpt" (a name both projects' files use)."""
    return jsonl(
        {"prompt": prompt, "completions": ["a", "b"], "model": model, "ranking": [[0], [1]]},
        {"prompt": prompt + " again", "completions": ["c", "d"], "model": "gpt", "ranking": [[1], [0]]},
    )


def test_imports_into_two_projects_keep_their_sets_and_external_versions_apart(app_client):
    with session_scope() as s:
        alpha, beta = make_project(s, "alpha").id, make_project(s, "beta").id
        boss, _ = auth_service.create_user(s, "boss", Role.admin, "correct-horse-1")
        token = auth_service.issue_api_token(s, boss, "t")
    headers = {"Authorization": f"Bearer {token}"}
    for project, model in ((alpha, "alpha-only"), (beta, "beta-only")):
        r = app_client.post(
            f"/api/v1/imports?project={project}",
            headers=headers,
            files={"file": ("g.jsonl", groups(f"question of {model}", model))},
            data={"kind": "ranked-groups", "prompt_set": "shared-name"},
        )
        assert r.status_code == 201, r.text

    with session_scope() as s:
        sets = s.execute(select(PromptSet.name, PromptSet.project_id)).all()
        externals = s.execute(
            select(ModelVersion.name, ModelVersion.project_id).where(ModelVersion.kind == ModelKind.external)
        ).all()
    assert sorted(sets) == sorted([("shared-name", alpha), ("shared-name", beta)])
    # "gpt" in both files: one external version per project, never the other project's.
    assert sorted(externals) == sorted(
        [("alpha-only", alpha), ("gpt", alpha), ("beta-only", beta), ("gpt", beta)]
    )

    # The models page and its data show a project's own external sources only.
    login(app_client, "boss", "correct-horse-1")
    page = app_client.get(f"/admin/models?project={alpha}")
    assert page.status_code == 200
    assert "alpha-only" in page.text and "beta-only" not in page.text
    rows = app_client.get(f"/admin/models.json?project={beta}").json()
    assert sorted(r["name"] for r in rows["rows"] if r["kind"] == "external") == ["beta-only", "gpt"]

    # An export filtered by a name both projects use must say which project (a 4xx naming the field).
    clash = app_client.get("/api/v1/exports/pairs.jsonl?prompt_set=shared-name", headers=headers)
    assert clash.status_code == 422 and "prompt_set" in clash.json()["detail"]
    one = app_client.get(
        f"/api/v1/exports/pairs.jsonl?prompt_set=shared-name&project={beta}", headers=headers
    )
    assert one.status_code == 200
    assert sorted(json.loads(x)["prompt"] for x in one.text.splitlines()) == [
        "question of beta-only",
        "question of beta-only again",
    ]


def test_the_admin_import_and_export_pages_work_on_the_chosen_project(app_client):
    with session_scope() as s:
        beta = make_project(s, "beta").id
        auth_service.create_user(s, "boss", Role.admin, "correct-horse-1")
    login(app_client, "boss", "correct-horse-1")
    page = app_client.get(f"/admin/import?project={beta}")
    assert page.status_code == 200 and f'action="/admin/import?project={beta}"' in page.text
    r = app_client.post(
        f"/admin/import?project={beta}",
        files={"file": ("g.jsonl", groups("a beta question", "beta-writer"))},
        data={"kind": "ranked-groups", "prompt_set": "beta-set", "csrf_token": csrf_from(page.text)},
    )
    assert r.status_code == 200, r.text
    with session_scope() as s:
        assert s.execute(select(PromptSet.name, PromptSet.project_id)).all() == [("beta-set", beta)]
    # The export page lists the chosen project's prompt sets and links to its files.
    export = app_client.get(f"/admin/export?project={beta}").text
    assert '<option value="beta-set">' in export and f"pairs.jsonl?project={beta}" in export
    default_id = next(
        p["id"] for p in app_client.get("/api/v1/projects").json()["projects"] if p["name"] == "default"
    )
    assert '<option value="beta-set">' not in app_client.get(f"/admin/export?project={default_id}").text
