"""LoRA DPO on a tiny random Llama: preferred replies get likelier; the reference is the previous policy."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from tests.worker.conftest import MARKER, PLAIN_WORDS, marker_rankings
from worker import models, policy_dpo, reward
from worker.data import PreferencePair
from worker.generation import CandidateConfig, SamplingParams


def marker_pairs(n: int, seed: int) -> list[PreferencePair]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        prompt = " ".join(rng.choice(PLAIN_WORDS) for _ in range(4))
        rejected = " ".join(rng.choice(PLAIN_WORDS) for _ in range(3))
        pairs.append(PreferencePair(prompt, f"{MARKER} {MARKER} yes", rejected))
    return pairs


def _margins(model, tokenizer, pairs: list[PreferencePair]) -> tuple[float, float]:
    """Mean log-likelihood of the chosen replies, and mean chosen-minus-rejected log-likelihood."""
    prompts = [p.prompt for p in pairs]
    chosen = policy_dpo.completion_logprobs(model, tokenizer, prompts, [p.chosen for p in pairs])
    rejected = policy_dpo.completion_logprobs(model, tokenizer, prompts, [p.rejected for p in pairs])
    return sum(chosen) / len(pairs), sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


def _cfg(path: Path, **overrides) -> policy_dpo.DPOTrainConfig:
    base = {
        "base_model": str(path),
        "batch_size": 4,
        "max_length": 64,
        "heldout_fraction": 0.25,
        "device": "cpu",
    }
    return policy_dpo.DPOTrainConfig(**(base | overrides))


def test_dpo_raises_likelihood_of_preferred_replies(tiny_llama: Path, tmp_path: Path) -> None:
    pairs = marker_pairs(24, seed=0)
    base, tokenizer = models.load_causal_lm(str(tiny_llama))
    chosen_before, margin_before = _margins(base, tokenizer, pairs)

    calls: list[tuple[int, int, float]] = []
    result = policy_dpo.train_dpo(
        _cfg(tiny_llama, lr=1e-3, epochs=3, logging_steps=2),
        pairs,
        tmp_path / "policy",
        progress=lambda s, n, loss: calls.append((s, n, loss)),
    )
    m = result.metrics
    assert m["train_pairs"] == 18 and m["heldout_pairs"] == len(result.heldout_pairs) == 6
    assert m["heldout_loss"] < math.log(2)  # below the loss of a policy equal to its reference
    assert calls and [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert {c[1] for c in calls} == {m["total_steps"]}
    # Only the adapter and its tokenizer are kept: no checkpoints, no copy of TRL's reference adapter.
    out = tmp_path / "policy"
    assert (out / "adapter_model.safetensors").is_file() and not (out / ".checkpoints").exists()
    assert not (out / "ref").exists()

    trained, tokenizer = models.load_causal_lm(str(tiny_llama), adapter_dir=out)
    chosen_after, margin_after = _margins(trained, tokenizer, pairs)
    assert chosen_after > chosen_before
    assert margin_after > margin_before
    # Also on prompts held out from training.
    held_before = _margins(base, tokenizer, result.heldout_pairs)[1]
    assert _margins(trained, tokenizer, result.heldout_pairs)[1] > held_before


def test_reference_is_the_previous_policy(tiny_llama: Path, tmp_path: Path) -> None:
    first = tmp_path / "round1"
    policy_dpo.train_dpo(_cfg(tiny_llama, lr=1e-3, epochs=2), marker_pairs(16, seed=1), first)
    base, tokenizer = models.load_causal_lm(str(tiny_llama))
    previous, _ = models.load_causal_lm(str(tiny_llama), adapter_dir=first)
    new_pairs = marker_pairs(16, seed=2)
    assert _margins(previous, tokenizer, new_pairs) != pytest.approx(_margins(base, tokenizer, new_pairs))

    # With a zero learning rate the policy stays the previous one. If that is also the reference, every
    # implicit reward is 0 and the DPO loss is exactly log 2; a base-model reference would give another value.
    result = policy_dpo.train_dpo(
        _cfg(tiny_llama, lr=0.0, epochs=1), new_pairs, tmp_path / "round2", previous_adapter=first
    )
    assert result.metrics["heldout_loss"] == pytest.approx(math.log(2), abs=1e-6)
    unchanged, _ = models.load_causal_lm(str(tiny_llama), adapter_dir=tmp_path / "round2")
    assert _margins(unchanged, tokenizer, new_pairs) == pytest.approx(
        _margins(previous, tokenizer, new_pairs)
    )


def test_early_stopping_on_heldout_loss(tiny_llama: Path, tmp_path: Path) -> None:
    # Nothing to gain: chosen and rejected are random, so held-out loss stops improving.
    rng = random.Random(3)
    pairs = [
        PreferencePair(
            " ".join(rng.choice(PLAIN_WORDS) for _ in range(4)),
            " ".join(rng.choice(PLAIN_WORDS) for _ in range(3)),
            " ".join(rng.choice(PLAIN_WORDS) for _ in range(3)),
        )
        for _ in range(24)
    ]
    result = policy_dpo.train_dpo(
        _cfg(tiny_llama, lr=5e-3, epochs=10, eval_every=1, patience=2), pairs, tmp_path / "p"
    )
    m = result.metrics
    assert m["stopped_early"] and m["steps"] < m["total_steps"]
    eval_losses = [h["eval_loss"] for h in result.log_history if "eval_loss" in h]
    # The saved (and finally evaluated) model is the best checkpoint.
    assert m["heldout_loss"] == pytest.approx(min(eval_losses[:-1]))
    assert m["best_step"] is not None and m["best_step"] < m["steps"]


def test_reward_labelled_pairs(tiny_llama: Path, tmp_path: Path) -> None:
    rm_cfg = reward.RewardConfig(base_model=str(tiny_llama), lr=2e-3, epochs=4, max_length=64, device="cpu")
    reward.train_reward_model(rm_cfg, marker_rankings(24), tmp_path / "rm")
    rm = reward.load_reward_model(tmp_path / "rm")
    policy, tokenizer = models.load_causal_lm(str(tiny_llama))
    prompts = ["tell me a story", "write a poem about the moon", "why is it red ?"]
    cfg = CandidateConfig(k=4, seed=3, sampling=SamplingParams(temperature=1.0, max_new_tokens=10))

    pairs = policy_dpo.reward_labelled_pairs(policy, tokenizer, rm, prompts, cfg)
    assert [p.prompt for p in pairs] == prompts
    for p in pairs:
        chosen, rejected = rm.score(p.prompt, [p.chosen, p.rejected])
        assert chosen > rejected
    # An impossible gap keeps nothing.
    assert policy_dpo.reward_labelled_pairs(policy, tokenizer, rm, prompts, cfg, min_gap=1e9) == []


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8, 32, 123])
def test_schedule_evaluates_only_after_warm_up_and_within_the_run(total):
    warmup, every = policy_dpo.schedule(total, 0.1, None)
    assert 0 <= warmup < total  # at least one update at a learning rate above 0
    assert warmup < every <= total  # the first evaluation scores a trained adapter, and it happens
    assert total // every >= min(4, total // (warmup + 1))  # still several evaluations on longer runs


def test_schedule_keeps_an_explicit_evaluation_interval():
    assert policy_dpo.schedule(40, 0.1, 3) == (4, 3)


def test_a_step_cap_above_the_epochs_updates_leaves_the_epochs_in_charge(
    tiny_llama: Path, tmp_path: Path
) -> None:
    # 6 training pairs in batches of 4 are 2 updates an epoch; a cap of 32 must not make it 32 updates.
    result = policy_dpo.train_dpo(
        _cfg(tiny_llama, epochs=1, max_steps=32), marker_pairs(8, seed=2), tmp_path / "policy"
    )
    m = result.metrics
    assert m["train_pairs"] == 6
    assert (m["steps"], m["total_steps"]) == (2, 2)
