"""LoRA GRPO on a tiny random Llama: the reward rises on a clear synthetic reward, held-out prompts and
early stopping as RLOO's, the adapter layout every policy shares."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.conversation import PromptLike
from tests.worker.conftest import PLAIN_WORDS, save_tiny_model
from tests.worker.test_policy_rloo import random_prompts
from worker import lora_policy
from worker.policy_grpo import GRPOTrainConfig, train_grpo

# Half of the plain words are "good": a dense reward (the random init says about half its words are good),
# so most groups of replies differ in reward and every update has a signal.
GOOD = frozenset(PLAIN_WORDS[::2])


class ShareOfGoodWords:
    """A clear synthetic reward: the share of a reply's words that are in GOOD."""

    def score_exchanges(
        self, exchanges: Sequence[tuple[PromptLike, str]], batch_size: int = 16
    ) -> list[float]:
        return [sum(w in GOOD for w in r.split()) / max(1, len(r.split())) for _, r in exchanges]


def _cfg(path: Path, **overrides) -> GRPOTrainConfig:
    base = {
        "base_model": str(path),
        "lr": 1e-3,
        "prompts_per_step": 2,
        "num_generations": 2,
        "max_completion_length": 6,
        "temperature": 1.0,
    }
    return GRPOTrainConfig(**(base | overrides))


@pytest.fixture(scope="module")
def sharp_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with its (tied) embeddings 5x larger. At the usual 0.02 init its logits stay within
    about +-1.3 whatever the LoRA does (RMS-normed hidden state times small embeddings), so no training can
    make a word much likelier: a reward would not move. Scaled, the same model can learn what it is paid."""
    import torch
    from transformers import AutoModelForCausalLM

    path = save_tiny_model("llama", tmp_path_factory.mktemp("sharp-llama"))
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(5.0)
    model.save_pretrained(path)
    return path


def test_grpo_raises_a_clear_reward(sharp_llama: Path, tmp_path: Path) -> None:
    result = train_grpo(
        _cfg(
            sharp_llama,
            lr=2e-2,
            epochs=12,
            prompts_per_step=4,
            num_generations=4,
            beta=0.0,
            heldout_fraction=0.0,
            lora_r=8,
            lora_target_modules="all-linear",
        ),
        random_prompts(8, seed=3),
        ShareOfGoodWords(),  # type: ignore[arg-type]
        tmp_path / "grpo",
    )
    rewards = [e["reward"] for e in result.log_history if e.get("reward") is not None]
    assert result.metrics["method"] == "grpo" and result.metrics["steps"] == len(rewards) == 24
    # Mean good-word share of the first and the last few updates' sampled replies.
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.2, (first, last, rewards)


def test_grpo_evaluates_on_heldout_prompts_and_keeps_the_best(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "grpo"
    shape = {"lora_r": 4, "lora_dropout": 0.1, "lora_target_modules": ["q_proj", "v_proj"]}
    result = train_grpo(
        _cfg(
            tiny_llama,
            epochs=3,
            heldout_fraction=0.25,
            eval_every=1,
            patience=1,
            scale_rewards="none",
            **shape,
        ),
        random_prompts(8, seed=0),
        ShareOfGoodWords(),  # type: ignore[arg-type]
        out,
    )
    m = result.metrics
    assert (m["prompts"], m["train_prompts"], m["heldout_prompts"]) == (8, 6, 2)
    evals = [(e["step"], e["eval_reward"]) for e in result.log_history if "eval_reward" in e]
    assert evals and evals[0][0] == 1
    best_step, best_reward = max(evals, key=lambda e: e[1])
    assert m["heldout_reward"] == pytest.approx(best_reward) and m["best_step"] == best_step
    # Patience 1: training ends at the first evaluation that does not beat the best so far (a run of nine
    # strict improvements is implausible from sampled replies), or runs all 9 updates.
    assert m["steps"] <= m["total_steps"] == 9 and evals[-1][0] == m["steps"]

    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_dropout"]) == (4, 0.1)
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert json.loads((out / lora_policy.POLICY_CONFIG_FILE).read_text())["method"] == "grpo"
    assert not (out / ".checkpoints").exists()


def test_grpo_refuses_an_unknown_reward_scaling(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale_rewards"):
        train_grpo(_cfg(tiny_llama, scale_rewards="rank"), ["a b"], ShareOfGoodWords(), tmp_path)  # type: ignore[arg-type]


def test_a_heldout_share_under_min_heldout_prompts_is_trained_on(tiny_llama: Path, tmp_path: Path) -> None:
    # 25% of 8 prompts is 2, under the minimum of 3: no held-out prompts, so no evaluation (shared with RLOO).
    result = train_grpo(
        _cfg(tiny_llama, heldout_fraction=0.25, min_heldout_prompts=3, prompts_per_step=4),
        random_prompts(8, seed=0),
        ShareOfGoodWords(),  # type: ignore[arg-type]
        tmp_path / "grpo",
    )
    m = result.metrics
    assert (m["prompts"], m["train_prompts"], m["heldout_prompts"]) == (8, 8, 0)
    assert m["heldout_reward"] is None and m["steps"] == 2
    assert not any("eval_reward" in e for e in result.log_history)
