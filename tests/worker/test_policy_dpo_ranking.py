"""Plackett-Luce DPO on rankings: pairwise DPO at K=2, Breslow ties, learning on a tiny random Llama."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.worker.conftest import MARKER, marker_rankings
from worker import models, reward
from worker import policy_dpo_ranking as pl
from worker.data import Ranking
from worker.dpo_shared import DPOTrainConfig, completion_logprobs, encode_completion, reward_labelled_rankings
from worker.generation import CandidateConfig, SamplingParams


def _cfg(path: Path, **overrides) -> DPOTrainConfig:
    base = {"base_model": str(path), "batch_size": 4, "max_length": 64, "heldout_fraction": 0.25}
    return DPOTrainConfig(**(base | {"device": "cpu"} | overrides))


# --- the loss on its own ---------------------------------------------------------------------------------


def test_strict_ranking_is_the_plackett_luce_likelihood() -> None:
    r = torch.tensor([0.3, -1.2, 2.0, 0.5])
    tiers = [[2], [0], [3], [1]]  # best first
    order = [2, 0, 3, 1]
    expected = -sum(
        float(r[order[k]]) - math.log(sum(math.exp(float(r[j])) for j in order[k:])) for k in range(4)
    )
    assert float(pl.plackett_luce_loss(r, tiers)) == pytest.approx(expected, abs=1e-6)


def test_two_candidates_give_the_pairwise_dpo_loss() -> None:
    r = torch.tensor([0.7, -0.4])
    assert float(pl.plackett_luce_loss(r, [[1], [0]])) == pytest.approx(float(-F.logsigmoid(r[1] - r[0])))


def test_ties_use_the_breslow_form() -> None:
    r = torch.tensor([0.2, 1.1, -0.5, 0.4])
    tiers = [[0, 1], [2, 3]]
    lse = lambda idx: math.log(sum(math.exp(float(r[i])) for i in idx))  # noqa: E731
    # Each tied member's denominator: its tier-mates and everything below.
    expected = -(
        (float(r[0]) - lse([0, 1, 2, 3]))
        + (float(r[1]) - lse([0, 1, 2, 3]))
        + (float(r[2]) - lse([2, 3]))
        + (float(r[3]) - lse([2, 3]))
    )
    assert float(pl.plackett_luce_loss(r, tiers)) == pytest.approx(expected, abs=1e-6)
    # How a tie is listed changes nothing.
    for a, b in itertools.product(itertools.permutations([0, 1]), itertools.permutations([2, 3])):
        assert float(pl.plackett_luce_loss(r, [list(a), list(b)])) == pytest.approx(expected, abs=1e-6)


def test_tied_candidates_are_pushed_above_the_rest_and_towards_each_other() -> None:
    r = torch.tensor([0.0, 0.5, 1.0], requires_grad=True)  # tiers: {0, 1} above {2}
    pl.plackett_luce_loss(r, [[0, 1], [2]]).backward()
    assert r.grad[0] < 0 and r.grad[1] < 0 and r.grad[2] > 0  # descent raises both tied, lowers the last
    # A tie below: descent moves the higher tied reward down and the lower one up.
    s = torch.tensor([2.0, 1.0, -1.0], requires_grad=True)  # tiers: {0} above {1, 2}
    pl.plackett_luce_loss(s, [[0], [1, 2]]).backward()
    assert s.grad[1] > 0 and s.grad[2] < 0 and s.grad[0] < 0


def test_full_ties_and_all_bad_rankings_are_left_out(tiny_llama: Path, tmp_path: Path) -> None:
    useless = [
        Ranking("a b c", ["x y", "y z"], [[0, 1]]),
        Ranking("d e f", ["x y", "y z"], [[0], [1]], all_bad=True),
    ]
    with pytest.raises(ValueError, match="no training rankings"):
        pl.train_dpo_ranking(_cfg(tiny_llama), useless, tmp_path / "p")


# --- against pairwise DPO on a model ---------------------------------------------------------------------


def _one_by_one_logp(model, ids: list[int], start: int) -> torch.Tensor:
    """log pi(completion) of one unpadded sequence, with gradients: the plainest possible reference."""
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, x[0, 1:, None])[start - 1 :, 0].sum()


def test_k2_loss_and_gradients_equal_pairwise_dpo(tiny_llama: Path) -> None:
    cfg = _cfg(tiny_llama, lora_dropout=0.0)
    model = pl._trainable_policy(str(tiny_llama), None, cfg, torch.device("cpu"))
    tokenizer = models.load_tokenizer(str(tiny_llama), padding_side="right")
    # Different lengths, so the batched pass pads and masks; the winner is sometimes candidate 1.
    rankings = [
        Ranking("tell me a story", ["the cat is big", "no"], [[0], [1]]),
        Ranking("why is it red ?", ["sun", "the sun is red and the sky is blue ."], [[1], [0]]),
        Ranking("write a poem", ["rain and snow", "fire"], [[0], [1]]),
    ]
    encoded = pl.encode_rankings(tokenizer, rankings, 64, None)
    for e in encoded:  # a reference that differs from the policy, so the margins are not all zero
        e.ref_logps = torch.randn(2) - 20
    with torch.no_grad():  # move the policy away from a no-op adapter, so gradients reach every LoRA matrix
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    beta = 0.3
    trainable = [p for p in model.parameters() if p.requires_grad]

    loss = pl.rankings_loss(model, encoded, int(tokenizer.pad_token_id), beta)
    grads = torch.autograd.grad(loss, trainable)

    pair_losses = []
    for e in encoded:
        (w,), (lose,) = e.ranking.tiers
        logp = {i: _one_by_one_logp(model, *e.sequences[i]) for i in (w, lose)}
        margin = (logp[w] - e.ref_logps[w]) - (logp[lose] - e.ref_logps[lose])
        pair_losses.append(-F.logsigmoid(beta * margin))  # DPO, eq. 7
    pair_loss = torch.stack(pair_losses).mean()
    pair_grads = torch.autograd.grad(pair_loss, trainable)

    assert torch.allclose(loss, pair_loss, atol=1e-6)
    assert any(g.abs().max() > 0 for g in grads)
    for g, h in zip(grads, pair_grads, strict=True):
        assert torch.allclose(g, h, atol=1e-6, rtol=1e-4)


def test_annotator_weights_scale_each_rankings_term(tiny_llama: Path) -> None:
    cfg = _cfg(tiny_llama, lora_dropout=0.0)
    model = pl._trainable_policy(str(tiny_llama), None, cfg, torch.device("cpu"))
    tokenizer = models.load_tokenizer(str(tiny_llama), padding_side="right")
    pad = int(tokenizer.pad_token_id)
    a = Ranking("tell me a story", ["the cat is big", "no", "a dog"], [[0], [1, 2]])
    b = Ranking("why is it red ?", ["sun", "the sun is red"], [[1], [0]])
    ref = {a.prompt: torch.tensor([-19.0, -21.0, -20.0]), b.prompt: torch.tensor([-18.0, -22.0])}

    def loss(*rankings: Ranking) -> torch.Tensor:
        encoded = pl.encode_rankings(tokenizer, list(rankings), 64, None)
        for e in encoded:
            e.ref_logps = ref[e.ranking.prompt]
        with torch.no_grad():
            return pl.rankings_loss(model, encoded, pad, 0.5)

    alone_a, alone_b = loss(a), loss(b)
    assert not torch.allclose(alone_a, alone_b)
    # Weight 3 against 1: the step's loss is the weighted mean of the two rankings' terms.
    assert torch.allclose(loss(replace(a, weight=3.0), b), (3 * alone_a + alone_b) / 4, atol=1e-6)
    # An unreliable annotator's ranking (weight 0) changes nothing.
    assert torch.allclose(loss(replace(a, weight=0.0), b), alone_b, atol=1e-6)


def test_batched_logps_match_one_sequence_at_a_time(tiny_gpt2: Path) -> None:
    model, tokenizer = models.load_causal_lm(str(tiny_gpt2), device=models.pick_device("cpu"))
    replies = ["yes", "the dog and the cat", "a big red house by the river ."]
    seqs = [encode_completion(tokenizer, "tell me about it", r, 64) for r in replies]
    batched = pl.sequence_logps(model, seqs, int(tokenizer.pad_token_id))
    single = completion_logprobs(model, tokenizer, ["tell me about it"] * 3, replies)
    assert torch.allclose(batched.detach(), torch.tensor(single), atol=1e-5)


# --- training ----------------------------------------------------------------------------------------------


def _preferred_margin(model, tokenizer, rankings: list[Ranking]) -> tuple[float, float]:
    """Mean log-likelihood of top-tier replies, and mean top-tier minus lower-tier log-likelihood."""
    top, margins = [], []
    for r in rankings:
        logps = completion_logprobs(model, tokenizer, [r.prompt] * len(r.candidates), r.candidates)
        best = [logps[i] for i in r.tiers[0]]
        rest = [logps[i] for tier in r.tiers[1:] for i in tier]
        top += best
        margins.append(sum(best) / len(best) - sum(rest) / len(rest))
    return sum(top) / len(top), sum(margins) / len(margins)


def test_preferred_replies_get_likelier_on_training_and_heldout_prompts(
    tiny_llama: Path, tmp_path: Path
) -> None:
    rankings = marker_rankings(24, k=4, seed=5)
    calls: list[tuple[int, int, float]] = []
    result = pl.train_dpo_ranking(
        _cfg(tiny_llama, lr=2e-3, epochs=4, beta=0.1),
        rankings,
        tmp_path / "policy",
        progress=lambda s, n, loss: calls.append((s, n, loss)),
    )
    m = result.metrics
    assert m["method"] == "dpo_ranking" and m["train_rankings"] == 18 and m["heldout_rankings"] == 6
    assert m["heldout_reward_accuracy"] > 0.7 and m["heldout_reward_margin"] > 0
    assert calls and [c[0] for c in calls] == sorted(c[0] for c in calls) and calls[-1][0] == m["steps"]
    out = tmp_path / "policy"
    assert (out / "adapter_model.safetensors").is_file() and (out / "policy_model.json").is_file()

    base, tokenizer = models.load_causal_lm(str(tiny_llama))
    trained, _ = models.load_causal_lm(str(tiny_llama), adapter_dir=out)
    train_part = [r for r in rankings if r not in result.heldout_rankings]
    top_before, margin_before = _preferred_margin(base, tokenizer, train_part)
    top_after, margin_after = _preferred_margin(trained, tokenizer, train_part)
    assert margin_after > margin_before and top_after > top_before
    held_before = _preferred_margin(base, tokenizer, result.heldout_rankings)
    held_after = _preferred_margin(trained, tokenizer, result.heldout_rankings)
    assert held_after[1] > held_before[1]
    assert all(MARKER in r.candidates[r.tiers[0][0]] for r in result.heldout_rankings)


def test_reference_is_computed_once_per_round(tiny_llama: Path, tmp_path: Path) -> None:
    """Gradient-free passes see each candidate once (the reference), however many epochs follow."""
    rankings = marker_rankings(8, k=3, seed=1)
    seen = {"no_grad": 0, "grad": 0}

    def count(module, args) -> None:
        if isinstance(module, torch.nn.Embedding) and args:
            seen["grad" if torch.is_grad_enabled() else "no_grad"] += int(args[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        result = pl.train_dpo_ranking(
            _cfg(tiny_llama, epochs=3, heldout_fraction=0.0, batch_size=2), rankings, tmp_path / "p"
        )
    finally:
        handle.remove()
    assert result.metrics["steps"] == 12
    assert seen["no_grad"] == 8 * 3  # every candidate once
    assert seen["grad"] == 3 * 8 * 3  # each epoch: every candidate once


def test_reference_of_a_continued_policy_is_that_policy(tiny_llama: Path, tmp_path: Path) -> None:
    rankings = marker_rankings(12, k=3, seed=2)
    first = tmp_path / "round1"
    moved = pl.train_dpo_ranking(_cfg(tiny_llama, lr=2e-3, epochs=2), rankings, first)
    assert abs(moved.metrics["heldout_reward_margin"]) > 1e-4  # round 1 moved away from the base model
    # Round 2 starts from round 1's adapter and cannot move (lr 0): its implicit rewards are all exactly 0,
    # which they are only if the reference is round 1's policy, not the base model.
    second = pl.train_dpo_ranking(
        _cfg(tiny_llama, lr=0.0), rankings, tmp_path / "round2", previous_adapter=first
    )
    m = second.metrics
    assert m["heldout_reward_margin"] == pytest.approx(0.0, abs=1e-6) and m["heldout_reward_accuracy"] == 0.0
    sizes = [(len(r.tiers[0]), len(r.tiers[1])) for r in second.heldout_rankings]
    uniform = [a * math.log(a + b) + b * math.log(b) for a, b in sizes]  # -log P(ranking) at equal rewards
    assert m["heldout_loss"] == pytest.approx(sum(uniform) / len(uniform), abs=1e-5)


def test_reward_labelled_rankings_order_fresh_samples_by_reward(tiny_llama: Path, tmp_path: Path) -> None:
    rm_cfg = reward.RewardConfig(base_model=str(tiny_llama), lr=2e-3, epochs=2, max_length=64, device="cpu")
    reward.train_reward_model(rm_cfg, marker_rankings(16), tmp_path / "rm")
    rm = reward.load_reward_model(tmp_path / "rm")
    policy, tokenizer = models.load_causal_lm(str(tiny_llama))
    prompts = ["tell me a story", "why is it red ?"]
    cfg = CandidateConfig(k=4, seed=3, sampling=SamplingParams(temperature=1.0, max_new_tokens=10))

    rankings = reward_labelled_rankings(policy, tokenizer, rm, prompts, cfg)
    assert [r.prompt for r in rankings] == prompts
    for r in rankings:
        scores = rm.score(r.prompt, r.candidates)
        assert sorted(i for tier in r.tiers for i in tier) == list(range(len(r.candidates)))
        levels = [scores[tier[0]] for tier in r.tiers]
        assert levels == sorted(levels, reverse=True) and len(r.pairs()) >= 1
    assert reward_labelled_rankings(policy, tokenizer, rm, prompts, cfg, min_gap=1e9) == []
