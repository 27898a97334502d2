"""Getting work to annotators: prompts imported without candidates say what happens next, and a
generation-only job for a prompt set starts from the API and the admin form (admins only), with its own
wording on its page."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.orm import ModelKind, ModelStatus, Role, Round, RoundKind, RoundStatus
from tests.conftest import csrf_from, login
from tests.factories import make_comparison_set, make_model_version, make_prompt, make_prompt_set
from tests.training_data import clear_queue


@pytest.fixture
def queue() -> Iterator[None]:
    clear_queue()
    yield
    clear_queue()


def waiting_set(name: str = "fresh", prompts: int = 3) -> int:
    """A prompt set whose prompts have no candidates, plus one prompt that already has an open set."""
    with session_scope() as s:
        ps = make_prompt_set(s, name)
        for i in range(prompts):
            make_prompt(s, ps, text=f"{name} question {i}?")
        make_comparison_set(s, make_prompt(s, ps, text=f"{name} answered?"))
        return ps.id


def only_round() -> Round:
    with session_scope() as s:
        (row,) = s.scalars(select(Round)).all()
        s.expunge(row)
        return row


def test_the_api_starts_a_generation_job_for_a_prompt_set_with_its_settings(app_client, api_token, queue):
    ps_id = waiting_set()
    with session_scope() as s:
        version = make_model_version(s, "policy-v1", status=ModelStatus.candidate).id
        reward = make_model_version(s, "reward-v1", kind=ModelKind.reward).id
    boss = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    body = {
        "prompt_set_id": ps_id,
        "model_version_id": version,
        "k": 3,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_new_tokens": 64,
        "prompts": 2,
    }
    annotator = {"Authorization": f"Bearer {api_token('ann')}"}
    assert app_client.post("/api/v1/generations", json=body, headers=annotator).status_code == 403
    assert app_client.post("/api/v1/generations", json=body).status_code in (401, 403)

    bad_version = app_client.post(
        "/api/v1/generations", json={**body, "model_version_id": reward}, headers=boss
    )
    assert bad_version.status_code == 422 and "not a policy" in bad_version.json()["detail"]
    assert app_client.post("/api/v1/generations", json={**body, "k": 1}, headers=boss).status_code == 422
    missing = app_client.post("/api/v1/generations", json={**body, "prompt_set_id": 999999}, headers=boss)
    assert missing.status_code == 422 and "no such prompt set" in missing.json()["detail"]

    resp = app_client.post("/api/v1/generations", json=body, headers=boss)
    assert resp.status_code == 202, resp.text
    row = only_round()
    assert resp.json()["id"] == row.id and row.kind == RoundKind.generate and row.status == RoundStatus.queued
    cfg = row.config
    assert (cfg["prompt_set_id"], cfg["model_version_id"], cfg["k"], cfg["generate_prompts"]) == (
        ps_id,
        version,
        3,
        2,
    )
    assert (cfg["temperature"], cfg["top_p"], cfg["max_new_tokens"]) == (0.7, 0.9, 64)
    # One generation job at a time.
    again = app_client.post("/api/v1/generations", json=body, headers=boss)
    assert again.status_code == 409 and "generation job" in again.json()["detail"]


def test_a_prompt_set_with_nothing_waiting_is_refused(app_client, api_token, queue):
    with session_scope() as s:
        ps = make_prompt_set(s, "all-answered")
        make_comparison_set(s, make_prompt(s, ps))
        ps_id = ps.id
    boss = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    resp = app_client.post("/api/v1/generations", json={"prompt_set_id": ps_id}, headers=boss)
    assert resp.status_code == 422 and "already has an open comparison set" in resp.json()["detail"]


def test_import_and_data_pages_say_what_happens_next_and_the_form_starts_the_job(
    app_client, make_user, queue
):
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    token = csrf_from(app_client.get("/admin/import").text)
    lines = "".join(json.dumps({"prompt": f"Why is the sky blue, take {i}?"}) + "\n" for i in range(3))
    report = app_client.post(
        "/admin/import",
        data={"csrf_token": token, "kind": "prompts", "prompt_set": "bare"},
        files={"file": ("bare.jsonl", io.BytesIO(lines.encode()), "application/jsonl")},
    )
    assert report.status_code == 200, report.text
    assert 'data-summary="candidates">0<' in report.text
    assert 'id="next-step" data-waiting="3"' in report.text and "no annotator sees them" in report.text
    with session_scope() as s:
        from app.prompts import repository as prompts_repo

        ps = prompts_repo.get_prompt_set_by_name(s, "bare")
        assert ps is not None
        ps_id = ps.id
    assert f'href="/admin/generate?prompt_set={ps_id}"' in report.text

    data = app_client.get("/admin/data").text
    assert f'href="/admin/generate?prompt_set={ps_id}"' in data

    form = app_client.get(f"/admin/generate?prompt_set={ps_id}").text
    assert f'<option value="{ps_id}" selected>bare (3 waiting)</option>' in form
    assert 'name="temperature"' in form and 'name="top_p"' in form and 'name="max_new_tokens"' in form
    fields = {"prompt_set_id": str(ps_id), "k": "2", "temperature": "0.5", "max_new_tokens": "32"}
    # No CSRF token: refused, nothing queued.
    refused = app_client.post("/admin/generate", data=fields, follow_redirects=False)
    assert refused.status_code == 403
    bad = app_client.post("/admin/generate", data={"csrf_token": csrf_from(form), **fields, "k": "99"})
    assert bad.status_code == 422 and 'id="generate-error"' in bad.text and "k must be at most 9" in bad.text
    resp = app_client.post(
        "/admin/generate", data={"csrf_token": csrf_from(form), **fields}, follow_redirects=False
    )
    assert resp.status_code == 303, resp.text
    row = only_round()
    assert resp.headers["location"] == f"/admin/rounds/{row.id}"
    assert row.kind == RoundKind.generate and row.requested_by_id is not None
    assert (row.config["prompt_set_id"], row.config["k"], row.config["temperature"]) == (ps_id, 2, 0.5)
    assert row.config["generate_prompts"] == 3  # the form's default: every waiting prompt

    page = app_client.get(f"/admin/rounds/{row.id}").text
    assert f"Generation job #{row.id}" in page and "of prompt set bare" in page
    for wording in ("training round", "Round #", "No loss recorded yet", "Cancel round"):
        assert wording not in page
    assert "Cancel job" in page
    # Live like the round page: the progress fragment is polled while the job runs.
    assert f'hx-get="/admin/rounds/{row.id}/progress"' in page

    # One generation job at a time: the form says which one is in the way, with its link, before and after a
    # second try (as in the demo, whose first generation runs for minutes while the admin imports).
    busy = app_client.get(f"/admin/generate?prompt_set={ps_id}").text
    assert f'id="active-job" data-round="{row.id}"' in busy
    assert f'<a href="/admin/rounds/{row.id}">Generation job #{row.id}</a> is queued' in busy
    again = app_client.post("/admin/generate", data={"csrf_token": csrf_from(busy), **fields})
    assert again.status_code == 409 and 'id="generate-error"' in again.text
    assert f'href="/admin/rounds/{row.id}"' in again.text
    assert only_round().id == row.id


def test_the_generation_form_is_for_admins_only(app_client, make_user, queue):
    name, pw = make_user("ann", Role.annotator)
    login(app_client, name, pw)
    assert app_client.get("/admin/generate").status_code == 403
    token = csrf_from(app_client.get("/").text)
    resp = app_client.post("/admin/generate", data={"csrf_token": token}, follow_redirects=False)
    assert resp.status_code == 403
    with session_scope() as s:
        assert s.scalars(select(Round)).first() is None


def test_a_generation_jobs_page_shows_step_total_and_eta_from_its_first_progress(
    app_client, make_user, queue
):
    ps_id = waiting_set("eta")
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    form = app_client.get("/admin/generate").text
    app_client.post("/admin/generate", data={"csrf_token": csrf_from(form), "prompt_set_id": str(ps_id)})
    row = only_round()
    with session_scope() as s:
        # What the worker's progress writer stores a few seconds in (worker/stages/generate.py's clock).
        live = s.get(Round, row.id)
        assert live is not None
        live.status, live.stage, live.step, live.total, live.eta_seconds = (
            RoundStatus.running,
            "generate",
            1,
            12,
            95.0,
        )
    fragment = app_client.get(f"/admin/rounds/{row.id}/progress").text
    assert "step 1 / 12" in fragment and 'data-field="eta">1m 35s<' in fragment
    assert "No loss recorded yet" not in fragment and "<h2>Loss</h2>" not in fragment


def test_human_replies_and_k_together_fit_the_largest_set_annotators_rank():
    from app.annotation.tiers import MAX_CANDIDATES
    from app.training.config import MAX_SET_SIZE, ConfigError, RoundConfig

    assert MAX_SET_SIZE == MAX_CANDIDATES  # the training contract's copy of the annotation rule
    assert RoundConfig.resolve({"k": 7, "human_replies": 2}).human_replies == 2
    with pytest.raises(ConfigError, match="k \\+ human_replies must be at most 9"):
        RoundConfig.resolve({"k": 8, "human_replies": 2})
