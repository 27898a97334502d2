"""The Rounds page: start a round with overrides, follow its progress fragment, cancel it."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select, text

from app.db import session_scope
from app.orm import Role, Round, RoundStatus
from tests.conftest import csrf_from, login
from tests.training_data import clear_queue


@pytest.fixture
def admin(app_client, make_user):
    clear_queue()
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    yield app_client
    clear_queue()


def rounds() -> list[Round]:
    with session_scope() as s:
        rows = s.scalars(select(Round).order_by(Round.id)).all()
        s.expunge_all()
        return list(rows)


def start(client, **fields: str):
    token = csrf_from(client.get("/admin/rounds").text)
    return client.post("/admin/rounds", data={"csrf_token": token, **fields}, follow_redirects=False)


def test_the_form_starts_a_round_with_its_overrides(admin):
    r = start(
        admin,
        policy_epochs="3",
        dpo_beta="0.25",
        lora_r="4",
        policy_learning_rate="",
        multi_annotator="consensus",
        extra="# comments and blank lines are fine\n\nk=3\ngenerate_prompts = 5\n",
    )
    assert r.status_code == 303
    (row,) = rounds()
    assert r.headers["location"] == f"/admin/rounds/{row.id}"
    assert row.status == RoundStatus.queued and row.job_id is not None and row.trigger == "manual"
    cfg = row.config
    assert (cfg["policy_epochs"], cfg["dpo_beta"], cfg["lora_r"], cfg["multi_annotator"]) == (
        3,
        0.25,
        4,
        "consensus",
    )
    assert (cfg["k"], cfg["generate_prompts"]) == (3, 5)
    assert cfg["policy_learning_rate"] == 5e-5  # empty field: the default
    with session_scope() as s:
        assert s.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == 1

    # One round at a time: the page says which one is in the way, and nothing is queued.
    again = start(admin, policy_epochs="1")
    assert again.status_code == 409
    assert f"round {row.id} is still queued" in again.text and 'data-stat="active-round"' in again.text
    assert len(rounds()) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"policy_epochs": "many"}, "policy_epochs must be a whole number"),
        ({"dpo_beta": "-1"}, "dpo_beta must be at least"),
        ({"lora_r": "0"}, "lora_r must be at least 1"),
        ({"extra": "no_equals_sign"}, "expected key=value"),
        ({"extra": "warp_speed=9"}, "unknown round config key"),
    ],
)
def test_bad_settings_are_refused_with_the_form_kept(admin, fields, message):
    r = start(admin, **fields)
    assert r.status_code == 422
    assert message in r.text and 'id="round-error"' in r.text
    for value in fields.values():
        assert value in r.text  # what the admin typed is still in the form
    assert rounds() == []


def test_progress_fragment_follows_the_round_until_it_ends(admin):
    start(admin)
    (row,) = rounds()
    page = admin.get(f"/admin/rounds/{row.id}").text
    assert 'hx-trigger="every 1s"' in page and f'hx-get="/admin/rounds/{row.id}/progress"' in page
    frag = admin.get(f"/admin/rounds/{row.id}/progress", headers={"HX-Request": "true"}).text
    assert "<html" not in frag and 'id="round-progress"' in frag and 'data-stage="queued"' in frag
    # Before the worker writes a line the log box says what fills it, not an empty dark strip.
    assert '<pre class="log"' not in frag and "The worker writes its log here" in frag

    with session_scope() as s:
        live = s.get(Round, row.id)
        live.status, live.stage, live.step, live.total = RoundStatus.running, "reward", 3, 10
        live.loss, live.eta_seconds = 0.61, 75.0
        live.loss_curve = [["reward", 1, 0.69], ["reward", 2, 0.65], ["reward", 3, 0.61]]
        live.log_tail = ["12:00:00 stage reward", "12:00:01 <b>not markup</b>"]
    frag = admin.get(f"/admin/rounds/{row.id}/progress", headers={"HX-Request": "true"}).text
    assert 'data-stage="reward"' in frag and "step 3 / 10 (30.0%)" in frag
    assert 'data-field="eta">1m 15s<' in frag and 'data-field="loss">0.6100<' in frag
    assert len(re.findall(r"<polyline", frag)) == 1 and 'data-points="3"' in frag
    assert "&lt;b&gt;not markup&lt;/b&gt;" in frag
    assert 'hx-trigger="every 1s"' in frag

    with session_scope() as s:
        done = s.get(Round, row.id)
        done.status, done.stage = RoundStatus.succeeded, "done"
        done.loss_curve = [*done.loss_curve, ["policy", 1, 0.7], ["policy", 2, 0.5]]
        done.metrics = {"winrate_vs_parent": 0.6, "reward": {"heldout_accuracy": 0.8}}
    frag = admin.get(f"/admin/rounds/{row.id}/progress", headers={"HX-Request": "true"}).text
    assert "hx-trigger" not in frag  # finished: polling stops, the curves and metrics stay
    assert len(re.findall(r"<polyline", frag)) == 2
    assert "reward.heldout_accuracy" in frag and "Cancel round" not in frag
    listing = admin.get("/admin/rounds").text
    assert f'data-round="{row.id}"' in listing and "60.0%" in listing


def test_cancel_from_the_page(admin):
    start(admin)
    (row,) = rounds()
    token = csrf_from(admin.get(f"/admin/rounds/{row.id}").text)
    r = admin.post(f"/admin/rounds/{row.id}/cancel", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/admin/rounds/{row.id}"
    (row,) = rounds()
    assert row.status == RoundStatus.cancelled
    r = admin.post(f"/admin/rounds/{row.id}/cancel", data={"csrf_token": token})
    assert r.status_code == 409  # nothing left to cancel
    # With a round running, htmx gets the updated fragment back.
    start(admin)
    second = rounds()[-1]
    with session_scope() as s:
        s.get(Round, second.id).status = RoundStatus.running
    r = admin.post(
        f"/admin/rounds/{second.id}/cancel", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 200 and "<html" not in r.text and "Cancelling" in r.text
    with session_scope() as s:
        assert s.get(Round, second.id).cancel_requested is True
    assert admin.get("/admin/rounds/999999").status_code == 404


def test_rounds_list_is_paginated(admin):
    with session_scope() as s:
        for _ in range(25):
            s.add(
                Round(
                    status=RoundStatus.succeeded,
                    stage="done",
                    config={},
                    loss_curve=[],
                    log_tail=[],
                    metrics={},
                )
            )
    first = admin.get("/admin/rounds").text
    second = admin.get("/admin/rounds?page=2").text
    assert first.count("<tr data-round=") == 20 and second.count("<tr data-round=") == 5
    with session_scope() as s:
        newest = s.scalar(select(func.max(Round.id)))
    assert f'data-round="{newest}"' in first
