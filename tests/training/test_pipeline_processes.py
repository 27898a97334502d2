"""A whole training round with its training stages data-parallel on two processes (`rankloop worker
--gpus 2`), two CPU processes on gloo standing in for two GPUs: the round runs, publishes and serves as on
one process.

The stage-level equivalence (same steps, losses and accuracy as one process) is tests/worker/test_launch.py's;
this checks the round wires the setting through to every data-parallel stage and still publishes whole
versions whose candidates reach annotators.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.orm import Candidate, ComparisonSet, ModelStatus, ModelVersion, Round, RoundStatus
from tests.training.test_pipeline import start
from tests.training_data import run_round_jobs, seed_rankings, tiny_overrides

# torchrun starts two Python processes that import torch and transformers for each stage.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts")]


def test_a_round_trains_on_two_processes_and_serves_its_candidates(clean_db, model_dir, monkeypatch):
    monkeypatch.setattr(get_settings(), "gpus", 2)
    with session_scope() as s:
        seed_rankings(s, prompts=6, annotators=2, unranked=3, human_first=True)
    round_id = start(tiny_overrides(model_dir, lora_dropout=0.0))

    assert run_round_jobs(round_id) == "succeeded"

    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.status == RoundStatus.succeeded, row.error
        reward = s.get(ModelVersion, row.reward_version_id)
        policy = s.get(ModelVersion, row.policy_version_id)
        # Both data-parallel stages ran on two processes; SFT too, since the human replies are demonstrations.
        assert reward.metrics["processes"] == 2
        assert policy.metrics["processes"] == 2
        assert row.metrics["sft"]["processes"] == 2
        assert reward.status == policy.status == ModelStatus.candidate
        for version in (reward, policy):
            assert Path(version.adapter_path).is_dir()
        # Rank 0 alone wrote the files: the new policy's candidates are served in the round's sets.
        sets = s.scalars(select(ComparisonSet).where(ComparisonSet.source == f"round:{round_id}")).all()
        made = {s.get(Candidate, i.candidate_id).model_version_id for cset in sets for i in cset.items}
        assert sets and policy.id in made


@pytest.mark.parametrize(
    ("method", "synthetic", "demonstrations", "beside"),
    [
        ("dpo", 0, False, "the policy"),
        ("dpo_ranking", 0, False, "the policy"),
        # The policy labels fresh samples with the reward model: it waits; SFT on the human replies does not.
        ("dpo", 2, True, "SFT"),
        ("dpo_ranking", 0, True, "SFT and the policy"),
    ],
)
def test_the_reward_model_trained_beside_sft_and_the_policy_is_the_one_trained_before_them(
    clean_db, model_dir, monkeypatch, method, synthetic, demonstrations, beside
):
    """The reward model needs neither SFT nor a policy without reward-labelled samples, so a CPU worker
    trains it in a child process at the same time; the round's outcome must not depend on it."""
    monkeypatch.setattr(get_settings(), "torch_threads", 1)
    with session_scope() as s:
        seed_rankings(s, prompts=6, annotators=2, unranked=3, human_first=demonstrations)
    outcome = {}
    for mode in ("off", "on"):
        monkeypatch.setattr(get_settings(), "parallel_stages", mode)
        overrides = tiny_overrides(
            model_dir, lora_dropout=0.0, synthetic_prompts=synthetic, policy_method=method
        )
        round_id = start(overrides)
        assert run_round_jobs(round_id) == "succeeded"
        with session_scope() as s:
            row = s.get(Round, round_id)
            assert row.status == RoundStatus.succeeded, row.error
            log = "\n".join(row.log_tail or [])
            assert (f"child process beside {beside} (" in log) == (mode == "on")
            stages = [line.split("stage ", 1)[1] for line in row.log_tail if " stage " in line]
            assert ("sft" in stages) == demonstrations
            # Beside the policy: the policy's stage first, then the rest of the reward model's under its own
            # name. A policy that needs the reward model comes after it either way.
            if "policy" in beside:
                assert (stages.index("policy") < stages.index("reward")) == (mode == "on")
            else:
                assert stages.index("sft") < stages.index("reward") < stages.index("policy")
            reward = s.get(ModelVersion, row.reward_version_id)
            policy = s.get(ModelVersion, row.policy_version_id)
            assert Path(reward.adapter_path).is_dir() and Path(policy.adapter_path).is_dir()
            # The curve shows the reward model's steps, relayed from the child.
            reward_points = [p for p in row.loss_curve if p[0] == "reward"]
            assert len(reward_points) == reward.metrics["steps"] > 0
            outcome[mode] = (reward.metrics, row.metrics["policy"])
    (rm_off, policy_off), (rm_on, policy_on) = outcome["off"], outcome["on"]
    # No rankings arrive between the two rounds: the reward model trains on the same snapshot, same seed.
    assert rm_on["steps"] == rm_off["steps"]
    assert rm_on["heldout_accuracy"] == pytest.approx(rm_off["heldout_accuracy"], abs=1e-6)
    assert rm_on["heldout_loss"] == pytest.approx(rm_off["heldout_loss"], abs=1e-4)
    if not synthetic:  # reward-labelled samples come from each round's own start adapter: they differ
        assert policy_on["steps"] == policy_off["steps"]
