"""Faults with a real `rankloop worker` process: SIGKILL mid-training, restart, cancel while running.

The worker runs as a subprocess on the test database; the round trains a tiny random Llama for enough
reward-model steps that it can be killed in the middle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from app.config import get_settings
from app.db import session_scope
from app.orm import ModelVersion, Round, RoundStatus
from app.training import rounds, service
from tests.training_data import clear_queue, seed_rankings
from worker import artifacts

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts")]

RANKLOOP = str(Path(sys.executable).with_name("rankloop"))


class Workers:
    """Starts `rankloop worker` processes and makes sure none outlives the test."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **env_vars: str) -> subprocess.Popen[bytes]:
        """`rankloop worker ARGS`, with these environment variables on top of the test's."""
        env = {
            **os.environ,
            "RANKLOOP_WORKER_HEARTBEAT_SECONDS": "1",
            "RANKLOOP_WORKER_STALLED_SECONDS": "5",
            "RANKLOOP_PROGRESS_INTERVAL_SECONDS": "0.5",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **env_vars,
        }
        log = open(self.log_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([RANKLOOP, "worker", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def workers(clean_db, tmp_path) -> Iterator[Workers]:
    clear_queue()
    w = Workers(tmp_path)
    try:
        yield w
    finally:
        w.stop_all()
        clear_queue()


def wait_for(check: Callable[[], object], timeout: float, what: str, workers: Workers) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}\n--- worker logs ---\n{workers.logs()}")


def round_row(round_id: int) -> Round:
    with session_scope() as s:
        row = s.get(Round, round_id)
        s.expunge(row)
        return row


def training_mid_stage(round_id: int) -> Callable[[], bool]:
    def check() -> bool:
        row = round_row(round_id)
        return row.stage in ("reward", "policy") and row.step > 0

    return check


def start_round(model: Path, **extra: object) -> int:
    overrides = {
        "base_model": str(model),
        "device": "cpu",
        "max_length": 48,
        "max_new_tokens": 4,
        "k": 2,
        "generate_prompts": 2,
        "synthetic_prompts": 0,
        # No held-out prompts: no early stopping, so the reward stage runs every one of its epochs.
        "heldout_fraction": 0.0,
        "policy_heldout_fraction": 0.0,
        "reward_batch_size": 1,
        "policy_batch_size": 2,
        **extra,
    }
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=2)
        return rounds.start_round(s, get_settings(), overrides, requested_by_id=None).id


def assert_no_half_visible_versions() -> None:
    """Every version row points at a complete, verified directory, and every directory has its row."""
    root = get_settings().resolved_artifacts_dir
    with session_scope() as s:
        rows = s.scalars(select(ModelVersion).where(ModelVersion.adapter_path.is_not(None))).all()
        paths = {Path(r.adapter_path).name for r in rows}
        for row in rows:
            assert artifacts.verify_version(Path(row.adapter_path)) == []
    dirs = (
        {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if root.exists()
        else set()
    )
    assert dirs == paths


def test_killed_worker_round_is_retried_and_finishes(workers, model_dir):
    round_id = start_round(model_dir, reward_epochs=100)
    first = workers.start()
    wait_for(training_mid_stage(round_id), 180, "training to start", workers)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)

    killed = round_row(round_id)
    assert killed.status == RoundStatus.running and killed.attempts == 1
    assert_no_half_visible_versions()
    with session_scope() as s:
        assert s.scalars(select(ModelVersion).where(ModelVersion.adapter_path.is_not(None))).all() == []

    workers.start()
    done = wait_for(
        lambda: round_row(round_id).status not in (RoundStatus.queued, RoundStatus.running),
        300,
        "the retried round to finish",
        workers,
    )
    assert done
    row = round_row(round_id)
    assert row.status == RoundStatus.succeeded, f"{row.error}\n{workers.logs()}"
    assert row.attempts == 2
    assert any("attempt 1 was interrupted in stage" in line for line in row.log_tail)
    assert row.reward_version_id is not None and row.policy_version_id is not None
    assert_no_half_visible_versions()
    with session_scope() as s:
        job = s.execute(
            text("SELECT status, attempts FROM procrastinate_jobs WHERE id = :i"), {"i": row.job_id}
        ).one()
        assert job.status == "succeeded"


def test_killed_worker_round_fails_with_a_reason_when_attempts_are_used_up(workers, model_dir):
    round_id = start_round(model_dir, reward_epochs=200, max_attempts=1)
    first = workers.start()
    wait_for(training_mid_stage(round_id), 180, "training to start", workers)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)

    workers.start()
    wait_for(lambda: round_row(round_id).status == RoundStatus.failed, 120, "the round to fail", workers)
    row = round_row(round_id)
    assert row.error.startswith("gave up after 1 attempt(s): the worker stopped during stage")
    assert "max_attempts=1" in row.error
    assert row.finished_at is not None and row.reward_version_id is None
    assert_no_half_visible_versions()


def test_cancelling_a_running_round_stops_the_worker_job(workers, model_dir):
    round_id = start_round(model_dir, reward_epochs=200)
    workers.start()
    wait_for(training_mid_stage(round_id), 180, "training to start", workers)
    with session_scope() as s:
        service.cancel_round(s, round_id)
    wait_for(lambda: round_row(round_id).status == RoundStatus.cancelled, 60, "the round to stop", workers)
    row = round_row(round_id)
    assert row.error == "cancelled by an admin" and row.reward_version_id is None
    with session_scope() as s:
        job = s.execute(
            text("SELECT status FROM procrastinate_jobs WHERE id = :i"), {"i": row.job_id}
        ).scalar_one()
    assert job == "aborted"
    assert_no_half_visible_versions()
    # The worker is free again: a new round can start and be picked up.
    with session_scope() as s:
        again = rounds.start_round(
            s, get_settings(), {**row.config, "reward_epochs": 1}, requested_by_id=None
        ).id
    wait_for(lambda: round_row(again).status == RoundStatus.succeeded, 180, "the next round", workers)


def test_stopping_the_worker_puts_the_round_back_in_the_queue(workers, model_dir):
    # Long enough that the reward stage outlasts the worker's 10 s grace period on a fast, quiet machine.
    round_id = start_round(model_dir, reward_epochs=1000)
    proc = workers.start()
    wait_for(training_mid_stage(round_id), 180, "training to start", workers)
    assert round_row(round_id).stage == "reward"
    proc.send_signal(signal.SIGTERM)
    # The worker waits a grace period for the job, then asks it to stop; it stops at its next step.
    assert proc.wait(timeout=90) == 0, workers.logs()
    row = round_row(round_id)
    assert row.status == RoundStatus.queued and row.attempts == 0
    assert any("worker shut down" in line for line in row.log_tail)
    with session_scope() as s:
        job = s.execute(
            text("SELECT status FROM procrastinate_jobs WHERE id = :i"), {"i": row.job_id}
        ).scalar_one()
    assert job == "todo"
    assert_no_half_visible_versions()


def test_killed_worker_during_generation_is_retried_and_stores_each_set_once(workers, model_dir):
    from app.orm import ComparisonSet, RoundKind

    overrides = {
        "base_model": str(model_dir),
        "device": "cpu",
        "k": 3,
        "generate_prompts": 40,
        # One row per call and long replies: generation outlasts several progress writes (every 2 s) even
        # on a fast, quiet machine, so it can be killed in the middle.
        "generation_batch_size": 1,
        "max_new_tokens": 300,
    }
    with session_scope() as s:
        seed_rankings(s, prompts=2, annotators=1, unranked=40)
        round_id = rounds.start_round(
            s, get_settings(), overrides, requested_by_id=None, kind=RoundKind.generate
        ).id
    first = workers.start()
    wait_for(
        lambda: (r := round_row(round_id)).stage == "generate" and r.step > 0, 180, "generation", workers
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed = round_row(round_id)
    assert killed.status == RoundStatus.running and killed.attempts == 1
    with session_scope() as s:
        # Nothing of the interrupted attempt is visible: sets are stored only when generation is done.
        assert s.scalars(select(ComparisonSet).where(ComparisonSet.source.like("%round%"))).all() == []

    workers.start()
    wait_for(
        lambda: round_row(round_id).status not in (RoundStatus.queued, RoundStatus.running),
        300,
        "the retried generation to finish",
        workers,
    )
    row = round_row(round_id)
    assert row.status == RoundStatus.succeeded, f"{row.error}\n{workers.logs()}"
    assert row.attempts == 2
    with session_scope() as s:
        per_prompt = s.execute(
            text("SELECT prompt_id, count(*) FROM comparison_sets WHERE status = 'open' GROUP BY prompt_id")
        ).all()
    assert per_prompt, "the retried attempt stored no sets"
    assert all(n == 1 for _, n in per_prompt), per_prompt
