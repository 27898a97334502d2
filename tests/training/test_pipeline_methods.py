"""Training rounds by method on a tiny random Llama, in-process against the test database: SFT on imported
demonstrations, the online policy trainers (RLOO, GRPO), ranking DPO, and the round config's knobs
reaching each trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.orm import (
    Candidate,
    ModelVersion,
    Round,
)
from app.prompts import service as prompts_service
from tests.training.test_pipeline import start
from tests.training_data import run_round_jobs, seed_rankings, tiny_overrides
from worker import artifacts

# Each round trains a tiny model for a few seconds.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts")]


def test_demonstrations_are_imported_all_or_nothing_and_feed_sft(clean_db, model_dir):
    from app.errors import Invalid

    good = b'{"prompt": "tell me about the sun", "completion": "the sun is big and happy"}\n' * 2
    good += b'{"prompt": "tell me about the moon", "completion": "the moon is white"}\n'
    bad = good + b'{"prompt": "tell me about the moon"}\n' + b"not json\n"
    with session_scope() as s, pytest.raises(Invalid, match="2 malformed line"):
        prompts_service.import_demonstrations(s, get_settings(), bad)
    with session_scope() as s:
        assert s.scalars(select(Candidate)).all() == []
        first = prompts_service.import_demonstrations(s, get_settings(), good)
    assert (first.lines, first.prompts, first.demonstrations, first.duplicates) == (3, 2, 2, 1)
    with session_scope() as s:
        again = prompts_service.import_demonstrations(s, get_settings(), good)
        assert (again.prompts, again.demonstrations) == (0, 0)
        seed_rankings(s, prompts=4, annotators=1, unranked=0)

    round_id = start(tiny_overrides(model_dir, sft="on", generate_prompts=0, eval_prompts=0))
    assert run_round_jobs(round_id) == "succeeded"
    with session_scope() as s:
        row = s.get(Round, round_id)
        assert row.metrics["sft"]["demonstrations"] == 2 and row.metrics["sft"]["steps"] >= 1
        assert any(p[0] == "sft" for p in row.loss_curve)


def test_sft_on_without_demonstrations_fails_with_a_clear_reason(clean_db, model_dir):
    with session_scope() as s:
        seed_rankings(s, prompts=3, annotators=1, unranked=0)
    round_id = start(tiny_overrides(model_dir, sft="on"))
    with pytest.raises(ValueError, match="no demonstrations"):
        run_round_jobs(round_id)
    with session_scope() as s:
        assert "sft is 'on' but there are no demonstrations" in s.get(Round, round_id).error


def test_rloo_policy_method_trains_online_against_the_new_reward_model(clean_db, model_dir):
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=2)
    overrides = tiny_overrides(
        model_dir,
        policy_method="rloo",
        rloo_generations=2,
        policy_batch_size=4,
        eval_prompts=1,
        generate_prompts=1,
    )
    round_id = start(overrides)
    assert run_round_jobs(round_id) == "succeeded"
    with session_scope() as s:
        row = s.get(Round, round_id)
        policy = s.get(ModelVersion, row.policy_version_id)
        assert policy.metrics["method"] == "rloo" and policy.metrics["steps"] >= 1
        # Training prompts (4 minus the held-out ones) plus the two nobody ranked; RLOO keeps one of them
        # aside and samples it only to measure the mean reward its early stopping watches.
        assert policy.metrics["prompts"] == 5 and policy.config["num_generations"] == 2
        assert policy.metrics["train_prompts"] == 4 and policy.metrics["heldout_prompts"] == 1
        assert policy.metrics["heldout_reward"] is not None and policy.metrics["best_step"] >= 1
        assert policy.config["patience"] == 2 and policy.config["max_prompt_length"] == 32
        assert artifacts.verify_version(Path(policy.adapter_path)) == []
        assert any(p[0] == "policy" for p in row.loss_curve)


def test_dpo_ranking_policy_method_trains_on_whole_rankings(clean_db, model_dir):
    with session_scope() as s:
        seed_rankings(s, prompts=5, annotators=1, unranked=2)
    overrides = tiny_overrides(model_dir, policy_method="dpo_ranking", eval_prompts=1, generate_prompts=1)
    round_id = start(overrides)
    assert run_round_jobs(round_id) == "succeeded"
    with session_scope() as s:
        row = s.get(Round, round_id)
        policy = s.get(ModelVersion, row.policy_version_id)
        m = policy.metrics
        assert m["method"] == "dpo_ranking" and m["steps"] >= 1
        # The round's training rankings (5 prompts minus its held-out ones), plus the two unranked prompts'
        # fresh samples ranked by the new reward model where they differ; all go through the same loss.
        heldout = row.metrics["reward"]["heldout_prompts"]
        assert m["human_rankings"] == 5 - heldout and 0 <= m["synthetic_rankings"] <= 2
        assert m["train_rankings"] + m["heldout_rankings"] == m["human_rankings"] + m["synthetic_rankings"]
        assert policy.config["batch_size"] == 2
        assert any("ranking DPO on" in line for line in row.log_tail)
        adapter = Path(policy.adapter_path)
        assert artifacts.verify_version(adapter) == []
        assert json.loads((adapter / "policy_model.json").read_text())["method"] == "dpo_ranking"


@pytest.mark.slow
def test_grpo_policy_method_trains_online_and_publishes(clean_db, model_dir):
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=2)
    overrides = tiny_overrides(
        model_dir,
        policy_method="grpo",
        grpo_generations=2,
        grpo_scale_rewards="batch",
        policy_batch_size=4,
        eval_prompts=1,
        generate_prompts=1,
    )
    round_id = start(overrides)
    assert run_round_jobs(round_id) == "succeeded"
    with session_scope() as s:
        row = s.get(Round, round_id)
        policy = s.get(ModelVersion, row.policy_version_id)
        assert policy.metrics["method"] == "grpo" and policy.metrics["steps"] >= 1
        # The same prompts as RLOO: the training ones plus the two nobody ranked, one held out.
        assert policy.metrics["prompts"] == 5 and policy.metrics["heldout_prompts"] == 1
        assert policy.config["num_generations"] == 2 and policy.config["scale_rewards"] == "batch"
        assert policy.metrics["heldout_reward"] is not None
        assert artifacts.verify_version(Path(policy.adapter_path)) == []
        # Published like any policy: the round's new comparison set has candidates it wrote.
        assert row.metrics["generation"]["sets"] == 1
        written = s.scalars(select(Candidate.model_version_id)).all()
        assert policy.id in written


def test_round_config_knobs_reach_sft_reward_and_policy_training(clean_db, model_dir):
    with session_scope() as s:
        # First-ranked human replies: six demonstrations, so SFT runs and can hold one prompt out.
        seed_rankings(s, prompts=6, annotators=1, unranked=0, human_first=True)
    knobs = {
        "policy_weight_decay": 0.01,
        "reward_weight_decay": 0.02,
        "reward_margin_scale": 0.5,
        "lora_dropout": 0.1,
        "lora_target_modules": "q_proj,v_proj,o_proj",
        "policy_patience": 3,
        "policy_heldout_fraction": 0.2,
    }
    round_id = start(
        tiny_overrides(model_dir, generate_prompts=0, eval_prompts=0, synthetic_prompts=0, **knobs)
    )
    assert run_round_jobs(round_id) == "succeeded"

    targets = ["q_proj", "v_proj", "o_proj"]
    with session_scope() as s:
        row = s.get(Round, round_id)
        sft = row.metrics["sft"]
        # Six demonstrations minus those of the round's held-out prompts; SFT holds one more prompt out.
        withheld = row.metrics["reward"]["heldout_prompts"]
        assert sft["withheld_heldout_prompt_demonstrations"] == withheld == 2
        assert sft["demonstrations"] == 6 - withheld and sft["heldout_demonstrations"] == 1
        assert sft["heldout_loss"] is not None and 1 <= sft["best_step"] <= sft["steps"]
        assert sft["stopped_early"] == (sft["steps"] < sft["total_steps"])

        reward = s.get(ModelVersion, row.reward_version_id)
        assert reward.config["round_config"] == row.config
        assert row.config["lora_target_modules"] == "q_proj,v_proj,o_proj"
        assert (reward.config["weight_decay"], reward.config["margin_scale"]) == (0.02, 0.5)
        assert (reward.config["lora_dropout"], reward.config["lora_target_modules"]) == (0.1, targets)

        policy = s.get(ModelVersion, row.policy_version_id)
        assert (policy.config["weight_decay"], policy.config["patience"]) == (0.01, 3)
        assert (policy.config["lora_dropout"], policy.config["lora_target_modules"]) == (0.1, targets)
        assert policy.config["max_prompt_length"] == 32 and policy.config["heldout_fraction"] == 0.2

        # The adapters themselves: SFT made the policy's fresh adapter, DPO continued it.
        for version in (reward, policy):
            adapter = json.loads((Path(version.adapter_path) / "adapter_config.json").read_text())
            assert adapter["lora_dropout"] == 0.1 and sorted(adapter["target_modules"]) == sorted(targets)
