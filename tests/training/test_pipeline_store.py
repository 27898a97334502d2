"""Rounds with a model store URL (RANKLOOP_MODEL_STORE; fsspec's memory filesystem stands in for S3): the
versions go to the store, their rows hold their URLs, and the next round, its evaluation and its generation
read them back through the host's verified cache, fetched again once the cache is gone."""

from __future__ import annotations

import shutil
import uuid

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.orm import Candidate, ComparisonSet, ModelVersion, Round
from app.training import rounds
from tests.training_data import run_round_jobs, seed_rankings, tiny_overrides
from worker import artifacts
from worker.store import ModelStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts")]


def start(overrides: dict[str, object]) -> int:
    with session_scope() as s:
        return rounds.start_round(s, get_settings(), overrides, requested_by_id=None).id


def test_rounds_publish_to_a_store_url_and_build_on_versions_read_back_through_the_cache(
    clean_db, model_dir, monkeypatch, tmp_path
):
    settings = get_settings()
    url = f"memory://rankloop-{uuid.uuid4().hex[:8]}/versions"
    monkeypatch.setattr(settings, "model_store", url)
    monkeypatch.setattr(settings, "model_cache_dir", tmp_path / "cache")
    monkeypatch.setattr(settings, "promotion_min_rankings", 0)
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=2)
    first = start(
        tiny_overrides(model_dir, generate_prompts=0, synthetic_prompts=0, eval_prompts=0, auto_promote="yes")
    )
    assert run_round_jobs(first) == "succeeded"
    # As if the next round ran on another host: nothing cached.
    shutil.rmtree(tmp_path / "cache")
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=2, seed=1)
    second = start(tiny_overrides(model_dir, synthetic_prompts=0, eval_prompts=1, generate_prompts=2))
    assert run_round_jobs(second) == "succeeded"

    store = ModelStore.from_settings(settings)
    with session_scope() as s:
        r1, r2 = s.get(Round, first), s.get(Round, second)
        p1, p2 = s.get(ModelVersion, r1.policy_version_id), s.get(ModelVersion, r2.policy_version_id)
        reward2 = s.get(ModelVersion, r2.reward_version_id)
        trained = s.scalars(select(ModelVersion).where(ModelVersion.adapter_path.is_not(None))).all()
        assert {v.adapter_path for v in trained} == {f"{url}/{v.name}" for v in trained} and len(trained) == 4
        # Round 2 built on round 1's policy, scored round 1's reward model, and generated with both policies.
        assert p2.parent_id == p1.id and reward2.metrics["previous_version_id"] == r1.reward_version_id
        sets = s.scalars(select(ComparisonSet).where(ComparisonSet.source == f"round:{second}")).all()
        seen = {s.get(Candidate, i.candidate_id).model_version_id for cset in sets for i in cset.items}
        assert seen == {p1.id, p2.id}
        locations = [v.adapter_path for v in trained]
    assert store.version_names("") == sorted(v.rsplit("/", 1)[1] for v in locations)
    for location in locations:
        assert artifacts.verify_version(store.open(location)) == []
    assert not settings.resolved_artifacts_dir.exists()
