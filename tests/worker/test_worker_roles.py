"""Workers by role on one machine: a training worker (`--queues train`) and a generation worker
(`--queues generate`), each with its own data directory and cache, sharing only the database and a model
store directory (a file:// URL, as a shared mount would be). The round trains on one and generates on the
other; the training worker is killed mid-round first, and nothing half-published is ever visible."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.orm import Candidate, ComparisonSet, ModelVersion, RoundStatus
from tests.training_data import clear_queue
from tests.worker.test_worker_faults import Workers, round_row, start_round, training_mid_stage, wait_for
from worker import artifacts
from worker.store import ModelStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts")]


@pytest.fixture
def workers(clean_db, tmp_path) -> Iterator[Workers]:
    clear_queue()
    w = Workers(tmp_path)
    try:
        yield w
    finally:
        w.stop_all()
        clear_queue()


def assert_only_complete_versions_in_the_store(store: ModelStore) -> None:
    """Every version row points at a complete version in the store, and the store holds nothing else."""
    with session_scope() as s:
        rows = s.scalars(select(ModelVersion).where(ModelVersion.adapter_path.is_not(None))).all()
        locations = {r.name: r.adapter_path for r in rows}
    assert store.version_names("") == sorted(locations)
    for name, location in locations.items():
        assert location == f"{store.url}/{name}"
        assert artifacts.verify_version(store.open(location)) == []


def test_a_round_trains_on_one_host_and_generates_on_another_after_a_killed_trainer(
    workers, model_dir, tmp_path
):
    shared = (tmp_path / "shared-store").as_uri()
    gpu_host, cpu_host = tmp_path / "gpu-host", tmp_path / "cpu-host"
    train_env = {"RANKLOOP_DATA_DIR": str(gpu_host), "RANKLOOP_MODEL_STORE": shared}
    generate_env = {"RANKLOOP_DATA_DIR": str(cpu_host), "RANKLOOP_MODEL_STORE": shared}
    store = ModelStore(shared, tmp_path / "checker" / "artifacts", tmp_path / "checker" / "cache")

    round_id = start_round(model_dir, reward_epochs=60)
    generator = workers.start("--queues", "generate", **generate_env)
    trainer = workers.start("--queues", "train", "--no-maintenance", **train_env)
    wait_for(training_mid_stage(round_id), 180, "training to start", workers)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=30)
    killed = round_row(round_id)
    assert killed.status == RoundStatus.running and killed.attempts == 1
    assert_only_complete_versions_in_the_store(store)
    assert store.version_names("") == []

    # The generation worker's maintenance puts the dead trainer's job back; a new trainer takes it.
    again = workers.start("--queues", "train", "--no-maintenance", **train_env)
    wait_for(
        lambda: round_row(round_id).status not in (RoundStatus.queued, RoundStatus.running),
        400,
        "the retried round to finish",
        workers,
    )
    row = round_row(round_id)
    assert row.status == RoundStatus.succeeded, f"{row.error}\n{workers.logs()}"
    assert row.attempts == 2 and row.metrics["generated_sets"] > 0
    assert any("attempt 2 on cpu" in line and f"pid {again.pid})" in line for line in row.log_tail)
    assert any(
        "generation of the published versions: attempt 2" in line and f"pid {generator.pid})" in line
        for line in row.log_tail
    ), row.log_tail
    assert row.metrics["generation_device"] == "cpu" and row.metrics["wall_seconds"] > 0

    assert_only_complete_versions_in_the_store(store)
    with session_scope() as s:
        policy = s.get(ModelVersion, row.policy_version_id)
        reward = s.get(ModelVersion, row.reward_version_id)
        made = s.scalars(select(ComparisonSet).where(ComparisonSet.source == f"round:{round_id}")).all()
        authors = {s.get(Candidate, i.candidate_id).model_version_id for c in made for i in c.items}
    assert policy.id in authors
    # Neither host kept versions in its data directory; the generation host fetched both (policy to
    # generate, reward model to score) into its own cache, the trainer cached what it published.
    for host in (gpu_host, cpu_host):
        assert not (host / "artifacts").exists()
        cached = {p.name for p in (host / "model-cache").glob("*/*-round*") if p.is_dir()}
        assert cached == {policy.name, reward.name}, (host, cached)
