"""LoRA RLOO on a tiny random Llama: held-out prompts are only sampled for evaluation, early stopping on
their mean reward, the adapter's shape."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.worker.conftest import PLAIN_WORDS
from worker import lora_policy, models, reward
from worker.policy_rloo import RLOOTrainConfig, train_rloo


@pytest.fixture(scope="module")
def scorer(tiny_llama: Path) -> reward.RewardModel:
    """An untrained score head on the tiny backbone: RLOO only needs some fixed reward per reply."""
    import torch

    torch.manual_seed(0)
    tokenizer = models.load_tokenizer(str(tiny_llama), padding_side="right")
    cfg = reward.RewardConfig(base_model=str(tiny_llama), max_length=64)
    model = reward.build_reward_model(str(tiny_llama), tokenizer, cfg).eval()
    return reward.RewardModel(model, tokenizer, cfg.max_length)


def random_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(PLAIN_WORDS) for _ in range(5)) for _ in range(n)]


def _cfg(path: Path, **overrides) -> RLOOTrainConfig:
    base = {
        "base_model": str(path),
        "lr": 1e-3,
        "prompts_per_step": 2,
        "num_generations": 2,
        "max_completion_length": 6,
        "temperature": 1.0,
    }
    return RLOOTrainConfig(**(base | overrides))


def test_rloo_evaluates_on_heldout_prompts_and_keeps_the_best(
    tiny_llama: Path, tmp_path: Path, scorer: reward.RewardModel
) -> None:
    out = tmp_path / "rloo"
    shape = {"lora_r": 4, "lora_dropout": 0.1, "lora_target_modules": ["q_proj", "v_proj", "o_proj"]}
    result = train_rloo(
        _cfg(tiny_llama, epochs=3, heldout_fraction=0.25, eval_every=1, patience=1, **shape),
        random_prompts(8, seed=0),
        scorer,
        out,
    )
    m = result.metrics
    assert (m["prompts"], m["train_prompts"], m["heldout_prompts"]) == (8, 6, 2)
    evals = [(e["step"], e["eval_reward"]) for e in result.log_history if "eval_reward" in e]
    assert evals and evals[0][0] == 1
    # The adapter kept is the first evaluation with the highest held-out reward; with patience 1 training
    # ends at the first evaluation that does not beat it (nine strict improvements in a row are not
    # plausible from sampled replies).
    best_step, best_reward = max(evals, key=lambda e: e[1])
    assert m["heldout_reward"] == pytest.approx(best_reward) and m["best_step"] == best_step
    assert m["stopped_early"] and m["steps"] < m["total_steps"] == 9
    assert evals[-1][1] <= best_reward and evals[-1][0] == m["steps"]

    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_dropout"]) == (4, 0.1)
    assert sorted(config["target_modules"]) == ["o_proj", "q_proj", "v_proj"]
    assert json.loads((out / lora_policy.POLICY_CONFIG_FILE).read_text())["method"] == "rloo"
    assert not (out / ".checkpoints").exists()


def test_rloo_without_heldout_prompts_trains_without_evaluating(
    tiny_llama: Path, tmp_path: Path, scorer: reward.RewardModel
) -> None:
    calls: list[tuple[int, int, float]] = []
    result = train_rloo(
        _cfg(tiny_llama, heldout_fraction=0.0),
        random_prompts(4, seed=1),
        scorer,
        tmp_path / "rloo",
        progress=lambda s, n, v: calls.append((s, n, v)),
    )
    m = result.metrics
    assert m["heldout_prompts"] == 0 and m["heldout_reward"] is None
    assert m["steps"] == m["total_steps"] == 2 and not m["stopped_early"] and m["best_step"] == 2
    assert not any(k.startswith("eval_") for e in result.log_history for k in e)
    assert [c[0] for c in calls] == [1, 2]


def test_fewer_prompts_than_a_step_takes_still_train(
    tiny_llama: Path, tmp_path: Path, scorer: reward.RewardModel
) -> None:
    # TRL drops an epoch's incomplete last group: with 3 prompts and 4 per step it would make no step.
    result = train_rloo(
        _cfg(tiny_llama, prompts_per_step=4, heldout_fraction=0.0), random_prompts(3, 2), scorer, tmp_path
    )
    m = result.metrics
    assert m["prompts_per_step"] == 3 and m["steps"] == m["total_steps"] == 1


def test_prompts_lose_their_beginning_first(tiny_llama: Path) -> None:
    tokenizer = models.load_tokenizer(str(tiny_llama))
    assert lora_policy.cap_prompt(tokenizer, "tell me about the red sun", 2) == "red sun"
    assert lora_policy.cap_prompt(tokenizer, "the sun", 8) == "the sun"
    assert lora_policy.cap_prompt(tokenizer, "the sun", None) == "the sun"
