"""A training round is two jobs (worker/rounds.py): the training job publishes the versions and, in the same
transaction, hands the round to a job on the generate queue; that job continues the attempt, a retry of it
is a new attempt, and the training job, if retried after the hand-over, has nothing left to do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from app.config import get_settings
from app.db import session_factory, session_scope
from app.orm import Round, RoundStatus
from app.training import rounds as training_rounds
from app.training.queue import GENERATE_QUEUE, GENERATE_TASK, TRAIN_QUEUE
from tests.training_data import clear_queue
from worker import rounds


@pytest.fixture
def queue(clean_db) -> Iterator[None]:
    clear_queue()
    yield
    clear_queue()


def job(job_id: int) -> tuple[str, str, str]:
    with session_scope() as s:
        row = s.execute(
            text("SELECT queue_name, task_name, status FROM procrastinate_jobs WHERE id = :i"), {"i": job_id}
        ).one()
    return row.queue_name, row.task_name, row.status


def started_round(**config: object) -> tuple[int, int]:
    with session_scope() as s:
        row = training_rounds.start_round(
            s, get_settings(), {"base_model": "tiny", **config}, requested_by_id=None
        )
        return row.id, row.job_id


def hand_over(round_id: int) -> int:
    with session_scope() as s:
        s.get(Round, round_id, with_for_update=True)
        return rounds.hand_to_generation(s, round_id, {"policy_version_id": None, "rankings": 4}, "published")


def test_the_generation_job_continues_the_attempt_and_the_training_job_lets_go(queue):
    round_id, train_job = started_round(max_attempts=1)
    assert job(train_job)[0] == TRAIN_QUEUE
    sessions, settings = session_factory(), get_settings()
    assert rounds.claim(sessions, round_id, train_job, settings).attempt == 1

    generate_job = hand_over(round_id)
    assert job(generate_job) == (GENERATE_QUEUE, GENERATE_TASK, "todo")
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.job_id == generate_job and row.stage == rounds.GENERATION_QUEUED
        assert row.status == RoundStatus.running and row.metrics["rankings"] == 4
        assert row.log_tail[-2].endswith("published") and "generate queue" in row.log_tail[-1]

    # The training job, retried after its worker died past the hand-over, does not run the round again.
    assert rounds.claim(sessions, round_id, train_job, settings) is None
    # The generation job continues attempt 1 (max_attempts=1 is not used up by the hand-over).
    claim = rounds.claim(sessions, round_id, generate_job, settings)
    assert claim is not None and claim.attempt == 1
    # Its worker dies: the retried generation job is a new attempt, here one too many.
    assert rounds.claim(sessions, round_id, generate_job, settings) is None
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.status == RoundStatus.failed
        assert row.error.startswith("gave up after 1 attempt(s): the worker stopped during stage 'starting'")


def test_a_cancelled_round_waiting_for_generation_is_not_generated(queue):
    from app.training import service

    round_id, train_job = started_round()
    rounds.claim(session_factory(), round_id, train_job, get_settings())
    generate_job = hand_over(round_id)
    with session_scope() as s:
        service.cancel_round(s, round_id)
    assert job(generate_job)[2] == "cancelled"
    assert rounds.claim(session_factory(), round_id, generate_job, get_settings()) is None
    with session_scope() as s:
        assert s.get(Round, round_id).status == RoundStatus.cancelled
