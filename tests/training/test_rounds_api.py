"""Rounds and model versions through the JSON API: start (202), validation (422), roles (403), cancel,
one active round at a time (409), promotion. The queue is procrastinate's real table in the test DB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text

from app.db import session_scope
from app.orm import ModelKind, ModelStatus, ModelVersion, Role, Round, RoundStatus
from tests.factories import make_model_version
from tests.training_data import clear_queue


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def job(job_id: int) -> dict:
    with session_scope() as s:
        row = (
            s.execute(
                text(
                    "SELECT status, queue_name, task_name, lock, args, abort_requested"
                    " FROM procrastinate_jobs WHERE id = :i"
                ),
                {"i": job_id},
            )
            .mappings()
            .one()
        )
        return dict(row)


@pytest.fixture
def admin(app_client, api_token) -> Iterator[dict[str, str]]:
    clear_queue()
    yield auth(api_token("boss", Role.admin))
    clear_queue()


def round_count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Round)) or 0


def test_start_round_returns_202_with_id_and_queues_one_locked_training_job(app_client, admin):
    resp = app_client.post("/api/v1/rounds", json={"config": {"k": 3, "reward_epochs": 2}}, headers=admin)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued"

    detail = app_client.get(f"/api/v1/rounds/{body['id']}", headers=admin).json()
    assert detail["status"] == "queued" and detail["stage"] == "queued"
    assert detail["config"]["k"] == 3 and detail["config"]["reward_epochs"] == 2
    # Unset keys are resolved from defaults and settings, so the round can be re-run exactly.
    assert detail["config"]["base_model"] == "smollm2-135m-instruct"
    assert detail["progress"] == {"stage": "queued", "step": 0, "total": 0, "loss": None, "eta_seconds": None}

    queued = job(body["job_id"])
    assert queued["status"] == "todo" and queued["queue_name"] == "train"
    assert queued["task_name"] == "rankloop.run_round" and queued["lock"] == "rankloop-train"
    assert queued["args"] == {"round_id": body["id"]}

    listed = app_client.get("/api/v1/rounds", headers=admin).json()["rounds"]
    assert [r["id"] for r in listed] == [body["id"]]


def test_top_level_overrides_and_an_empty_body_are_accepted(app_client, admin):
    first = app_client.post("/api/v1/rounds", json={"k": 5}, headers=admin)
    assert first.status_code == 202, first.text
    with session_scope() as s:
        assert s.get(Round, first.json()["id"]).config["k"] == 5
    app_client.post(f"/api/v1/rounds/{first.json()['id']}/cancel", headers=admin)
    assert app_client.post("/api/v1/rounds", headers=admin).status_code == 202


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"no_such_key": 1}, "unknown round config key(s) 'no_such_key'"),
        ({"k": 12}, "k must be at most 9"),
        ({"k": 1}, "k must be at least 2"),
        ({"k": "four"}, "k must be a whole number"),
        ({"k": True}, "k must be a whole number"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"policy_method": "ppo"}, "policy_method must be one of dpo, dpo_ranking, rloo, grpo"),
        ({"grpo_scale_rewards": "rank"}, "grpo_scale_rewards must be one of group, batch, none"),
        ({"rloo_generations": 1}, "rloo_generations must be at least 2"),
        ({"new_policy_share": 1.5}, "new_policy_share must be at most 1.0"),
        (
            {"lora_target_modules": "q_proj,,v_proj"},
            "lora_target_modules must be comma-separated module names",
        ),
        ({"lora_target_modules": "q_proj;v_proj"}, "'q_proj;v_proj' is not a module name"),
        ({"lora_target_modules": "q_proj,all-linear"}, "lora_target_modules: all-linear stands alone"),
        ({"lora_target_modules": ["q_proj"]}, "lora_target_modules must be text"),
        ({"lora_dropout": 1.0}, "lora_dropout must be at most 0.9"),
        ({"policy_patience": 0}, "policy_patience must be at least 1"),
        ({"policy_weight_decay": "lots"}, "policy_weight_decay must be a number"),
        ({"reward_weight_decay": -0.1}, "reward_weight_decay must be at least 0.0"),
        ({"reward_margin_scale": 11}, "reward_margin_scale must be at most 10.0"),
    ],
)
def test_bad_config_is_422_with_a_clear_message_and_nothing_queued(app_client, admin, config, message):
    resp = app_client.post("/api/v1/rounds", json={"config": config}, headers=admin)
    assert resp.status_code == 422, resp.text
    assert message in resp.json()["detail"]
    assert round_count() == 0


def test_lora_target_modules_are_stored_tidy_and_given_to_peft_as_it_takes_them(app_client, admin):
    from app.training.config import RoundConfig

    resp = app_client.post("/api/v1/rounds", json={"lora_target_modules": " q_proj , v_proj "}, headers=admin)
    assert resp.status_code == 202, resp.text
    with session_scope() as s:
        stored = s.get(Round, resp.json()["id"]).config
    assert stored["lora_target_modules"] == "q_proj,v_proj"
    assert RoundConfig.from_stored(stored).lora_targets() == ["q_proj", "v_proj"]
    assert RoundConfig.resolve({"lora_target_modules": "all-linear"}).lora_targets() == "all-linear"
    assert RoundConfig.resolve({}).lora_targets() is None


def test_annotators_may_not_start_list_read_or_cancel_rounds_nor_promote(app_client, admin, api_token):
    started = app_client.post("/api/v1/rounds", headers=admin).json()
    ann = auth(api_token("ann", Role.annotator))
    assert app_client.post("/api/v1/rounds", headers=ann).status_code == 403
    assert app_client.get("/api/v1/rounds", headers=ann).status_code == 403
    assert app_client.get(f"/api/v1/rounds/{started['id']}", headers=ann).status_code == 403
    assert app_client.post(f"/api/v1/rounds/{started['id']}/cancel", headers=ann).status_code == 403
    assert app_client.get("/api/v1/model-versions", headers=ann).status_code == 403
    with session_scope() as s:
        version_id = make_model_version(s, status=ModelStatus.candidate).id
    assert app_client.post(f"/api/v1/model-versions/{version_id}/promote", headers=ann).status_code == 403
    assert round_count() == 1
    with session_scope() as s:
        assert s.get(ModelVersion, version_id).status == ModelStatus.candidate
    assert app_client.get("/api/v1/rounds").status_code == 401


def test_a_second_round_while_one_is_active_is_409(app_client, admin):
    first = app_client.post("/api/v1/rounds", headers=admin).json()
    resp = app_client.post("/api/v1/rounds", headers=admin)
    assert resp.status_code == 409
    assert f"round {first['id']} is still queued" in resp.json()["detail"]
    assert round_count() == 1


def test_cancelling_a_queued_round_cancels_it_and_its_job_at_once(app_client, admin):
    started = app_client.post("/api/v1/rounds", headers=admin).json()
    resp = app_client.post(f"/api/v1/rounds/{started['id']}/cancel", headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled" and resp.json()["finished_at"] is not None
    assert job(started["job_id"])["status"] == "cancelled"
    # Ended rounds cannot be cancelled again, and a new round may start now.
    assert app_client.post(f"/api/v1/rounds/{started['id']}/cancel", headers=admin).status_code == 409
    assert app_client.post("/api/v1/rounds", headers=admin).status_code == 202


def test_cancelling_a_running_round_asks_the_worker_to_stop(app_client, admin):
    started = app_client.post("/api/v1/rounds", headers=admin).json()
    # What the worker does when it picks the job: the job is "doing", the round "running".
    with session_scope() as s:
        s.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = :i"), {"i": started["job_id"]}
        )
        s.get(Round, started["id"]).status = RoundStatus.running
    resp = app_client.post(f"/api/v1/rounds/{started['id']}/cancel", headers=admin)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "running" and body["cancel_requested"] is True
    queued = job(started["job_id"])
    assert queued["status"] == "doing" and queued["abort_requested"] is True


def test_unknown_round_is_404(app_client, admin):
    assert app_client.get("/api/v1/rounds/999999", headers=admin).status_code == 404
    assert app_client.post("/api/v1/rounds/999999/cancel", headers=admin).status_code == 404


def test_promote_makes_the_policy_active_and_retires_the_previous_one(app_client, admin):
    with session_scope() as s:
        old = make_model_version(s, "policy-old", status=ModelStatus.active).id
        new = make_model_version(s, "policy-new", status=ModelStatus.candidate).id
        reward = make_model_version(s, "reward-1", kind=ModelKind.reward, status=ModelStatus.candidate).id

    resp = app_client.post(f"/api/v1/model-versions/{new}/promote", headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "active"
    listed = app_client.get("/api/v1/model-versions", params={"kind": "policy"}, headers=admin).json()[
        "versions"
    ]
    assert {v["id"]: v["status"] for v in listed} == {old: "retired", new: "active"}

    # Rolling back is a promotion too.
    assert app_client.post(f"/api/v1/model-versions/{old}/promote", headers=admin).status_code == 200
    with session_scope() as s:
        assert s.get(ModelVersion, old).status == ModelStatus.active
        assert s.get(ModelVersion, new).status == ModelStatus.retired

    resp = app_client.post(f"/api/v1/model-versions/{reward}/promote", headers=admin)
    assert resp.status_code == 409 and "only policies are promoted" in resp.json()["detail"]
    assert app_client.post("/api/v1/model-versions/999999/promote", headers=admin).status_code == 404


def test_config_keys_are_documented(app_client, admin):
    keys = app_client.get("/api/v1/rounds/config-keys", headers=admin).json()
    assert keys["k"]["default"] == 4 and keys["k"]["help"]
    assert keys["multi_annotator"]["choices"] == ["each", "consensus"]


def test_auto_round_starts_once_enough_new_rankings_arrived(admin):
    from app.config import get_settings
    from tests.training_data import seed_rankings
    from worker.scheduler import maybe_start_auto_round

    settings = get_settings().model_copy(update={"auto_round_min_rankings": 5})
    off = get_settings().model_copy(update={"auto_round_min_rankings": 0})
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=0, seed=1)
    with session_scope() as s:
        assert maybe_start_auto_round(s, settings) is None  # 4 < 5
        seed_rankings(s, prompts=2, annotators=1, unranked=0, seed=2)
    with session_scope() as s:
        assert maybe_start_auto_round(s, off) is None  # 0 = off
        round_id = maybe_start_auto_round(s, settings)
        assert round_id is not None
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.trigger == "auto" and row.status == RoundStatus.queued
        assert job(row.job_id)["status"] == "todo"
        assert "6 new rankings" in row.log_tail[0]
        # One active round at a time; after it, only rankings newer than it count.
        assert maybe_start_auto_round(s, settings) is None
        row.status = RoundStatus.succeeded
    with session_scope() as s:
        assert maybe_start_auto_round(s, settings) is None
        seed_rankings(s, prompts=5, annotators=1, unranked=0, seed=3)
    with session_scope() as s:
        assert maybe_start_auto_round(s, settings) not in (None, round_id)


def test_rounds_whose_job_ended_or_vanished_are_closed(app_client, admin):
    from worker.scheduler import close_orphaned_rounds

    lost = app_client.post("/api/v1/rounds", headers=admin).json()
    with session_scope() as s:
        s.execute(
            text("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = :i"), {"i": lost["job_id"]}
        )
    assert close_orphaned_rounds() == [lost["id"]]
    with session_scope() as s:
        row = s.get(Round, lost["id"])
        assert row.status == RoundStatus.failed
        assert row.error == "the round stopped without finishing: its queue job ended as failed"

    waiting = app_client.post("/api/v1/rounds", headers=admin).json()
    assert close_orphaned_rounds() == []
    with session_scope() as s:
        assert s.get(Round, waiting["id"]).status == RoundStatus.queued
        # A running round an admin cancelled while its worker was dead: the queue failed the job.
        s.get(Round, waiting["id"]).status = RoundStatus.running
        s.get(Round, waiting["id"]).cancel_requested = True
        s.execute(
            text("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = :i"), {"i": waiting["job_id"]}
        )
    assert close_orphaned_rounds() == [waiting["id"]]
    with session_scope() as s:
        assert s.get(Round, waiting["id"]).status == RoundStatus.cancelled
