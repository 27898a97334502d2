"""The disk fills up while a training round writes its model versions: the round fails with the reason and
no model version is published (no row; the half-written version directory is removed; the reward version
written just before is left unreferenced, for the next attempt's orphan sweep)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.orm import ModelVersion, Round, RoundStatus
from app.training import rounds
from tests.training_data import reset_artifacts, seed_rankings, tiny_model, tiny_overrides
from worker import artifacts
from worker.tasks import run_round_job

pytestmark = pytest.mark.slow


def test_disk_full_while_writing_the_policy_publishes_no_model_version(clean_db, tmp_path, monkeypatch):
    reset_artifacts()
    model = tiny_model(tmp_path / "tiny-llama")
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=1)
        round_id = rounds.start_round(
            s, get_settings(), tiny_overrides(model, generate_prompts=2), requested_by_id=None
        ).id

    real_write_json = artifacts._write_json

    def disk_full_on_the_policy(path: Path, data: object) -> None:
        # The real writer, failing part-way through the policy version (after its weights and metrics).
        if path.name == artifacts.VERSION_FILE and isinstance(data, dict) and data.get("kind") == "policy":
            raise OSError(28, "No space left on device")
        real_write_json(path, data)

    monkeypatch.setattr(artifacts, "_write_json", disk_full_on_the_policy)
    with pytest.raises(OSError, match="No space left"):
        run_round_job(round_id, job_id=None)

    root = get_settings().resolved_artifacts_dir
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.status == RoundStatus.failed and "No space left on device" in (row.error or "")
        assert row.reward_version_id is None and row.policy_version_id is None
        # No trained version has a row (the base model's row, which has no adapter, may be new).
        assert s.scalars(select(ModelVersion).where(ModelVersion.adapter_path.is_not(None))).all() == []
        names = s.scalars(select(ModelVersion.name)).all()
        assert not [n for n in names if f"round{round_id}" in n], names
    left = sorted(p.name for p in root.iterdir()) if root.exists() else []
    assert not [n for n in left if n.startswith("policy")], left  # nothing half-written
    assert not [n for n in left if n.startswith(".tmp")], left  # staging cleaned up
    reset_artifacts()
