"""Rounds, promotion and the auto-round per project: one policy line and one schedule each."""

from __future__ import annotations

import datetime as dt

import pytest

from app.config import get_settings
from app.errors import Conflict, Invalid
from app.orm import ModelStatus, Round, RoundKind
from app.training import repository as training_repo
from app.training import rounds
from tests.factories import make_model_version, make_project, make_prompt_set
from tests.training_data import seed_rankings


def test_promoting_a_policy_retires_only_its_own_projects_active_policy(db):
    a, b = make_project(db, "a"), make_project(db, "b")
    old_a = make_model_version(db, "a-1", project=a)
    active_b = make_model_version(db, "b-1", project=b)
    new_a = make_model_version(db, "a-2", status=ModelStatus.candidate, project=a)
    rounds.promote_policy(db, new_a.id)
    assert (old_a.status, new_a.status, active_b.status) == (
        ModelStatus.retired,
        ModelStatus.active,
        ModelStatus.active,
    )
    assert training_repo.active_policy(db, a.id) is new_a
    assert training_repo.active_policy(db, b.id) is active_b
    assert training_repo.active_policies(db) == {a.id: new_a, b.id: active_b}


def test_rounds_are_per_project_and_start_from_the_projects_defaults(db):
    settings = get_settings()
    a = make_project(db, "a", round_defaults={"reward_epochs": 3}, base_model="tiny/base", k_min=2, k_max=3)
    b = make_project(db, "b")
    first = rounds.start_round(db, settings, {}, requested_by_id=None, project_id=a.id)
    assert first.project_id == a.id
    assert first.config["reward_epochs"] == 3 and first.config["base_model"] == "tiny/base"
    assert first.config["k"] == 3  # the default 4, brought into the project's K range
    # One active round per project: another project's round may queue beside it.
    with pytest.raises(Conflict):
        rounds.start_round(db, settings, {}, requested_by_id=None, project_id=a.id)
    other = rounds.start_round(db, settings, {}, requested_by_id=None, project_id=b.id)
    assert other.project_id == b.id and other.config["base_model"] == settings.base_model
    with pytest.raises(Invalid, match="K range"):
        rounds.start_round(
            db, settings, {"k": 5}, requested_by_id=None, project_id=a.id, kind=RoundKind.generate
        )


def test_a_generation_job_refuses_another_projects_prompt_set_and_policy(db):
    settings = get_settings()
    a, b = make_project(db, "a"), make_project(db, "b")
    prompts_of_b = make_prompt_set(db, "b-prompts", project=b)
    policy_of_b = make_model_version(db, "b-policy", project=b)
    with pytest.raises(Invalid, match="no such prompt set in project"):
        rounds.start_generation(
            db, settings, {"prompt_set_id": prompts_of_b.id}, requested_by_id=None, project_id=a.id
        )
    with pytest.raises(Invalid, match="another project"):
        rounds.start_generation(
            db, settings, {"model_version_id": policy_of_b.id}, requested_by_id=None, project_id=a.id
        )


def test_the_auto_round_counts_each_projects_own_rankings(db):
    from worker.scheduler import maybe_start_auto_round

    settings = get_settings().model_copy(update={"auto_round_min_rankings": 0})
    a = make_project(db, "a", schedule_min_rankings=3)
    b = make_project(db, "b", schedule_min_rankings=3)
    seed_rankings(db, prompts=4, annotators=1, unranked=0, seed=11, project=a)
    seed_rankings(db, prompts=2, annotators=1, unranked=0, seed=12, project=b)
    round_id = maybe_start_auto_round(db, settings)
    started = db.get(Round, round_id)
    assert started is not None and started.project_id == a.id and started.trigger == "auto"
    assert "4 new rankings" in started.log_tail[0]
    assert training_repo.active_round(db, RoundKind.train, b.id) is None


def test_the_auto_round_follows_a_projects_cron_schedule(db):
    from worker.scheduler import maybe_start_auto_round

    settings = get_settings().model_copy(update={"auto_round_min_rankings": 0})
    weekly = make_project(db, "weekly", schedule_cron="0 3 * * 1")  # Mondays, 03:00 UTC
    weekly.created_at = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)  # a Monday, after 03:00
    seed_rankings(db, prompts=1, annotators=1, unranked=0, seed=13, project=weekly)
    sunday = dt.datetime(2026, 11, 8, 23, 0, tzinfo=dt.UTC)
    assert maybe_start_auto_round(db, settings, now=sunday) is None  # next Monday 03:00 not reached
    monday = dt.datetime(2026, 11, 9, 3, 1, tzinfo=dt.UTC)
    round_id = maybe_start_auto_round(db, settings, now=monday)
    assert round_id is not None and db.get(Round, round_id).project_id == weekly.id
    assert "scheduled (0 3 * * 1" in db.get(Round, round_id).log_tail[0]


def test_a_bad_cron_expression_is_refused_naming_the_field(db):
    from app.projects import service
    from app.projects.schemas import ProjectIn

    with pytest.raises(Invalid, match="schedule_cron"):
        service.create_project(db, ProjectIn(name="x", schedule_cron="every monday"))
    with pytest.raises(Invalid, match="round_defaults"):
        service.create_project(db, ProjectIn(name="y", round_defaults={"no_such_key": 1}))
    made = service.create_project(
        db, ProjectIn(name="z", schedule_cron=" 0  3 * * 1 ", flag_types=["Toxic", "toxic"])
    )
    assert made.schedule_cron == "0 3 * * 1" and made.flag_types == ["toxic"]
