"""Reward model: the K-wise loss, its equivalence with the pairwise loss, learning a clear preference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.worker.conftest import MARKER, marker_rankings
from worker import reward
from worker.data import Ranking, ranking_to_pairs, split_by_prompt
from worker.models import load_tokenizer


def _pair_loss(diff: float) -> float:
    return -math.log(1 / (1 + math.exp(-diff)))


def test_ranking_loss_uses_every_pair_and_skips_ties() -> None:
    scores = torch.tensor([2.0, 1.0, 0.0, 0.5])
    strict = Ranking("p", ["a", "b", "c", "d"], [[0], [1], [3], [2]])
    loss, n = reward.ranking_loss(scores, strict)
    # C(4,2) = 6 ordered pairs from a strict order of four.
    expected = [2 - 1, 2 - 0.5, 2 - 0, 1 - 0.5, 1 - 0, 0.5 - 0]
    assert n == 6
    assert loss.item() == pytest.approx(sum(map(_pair_loss, expected)) / 6)

    tied = Ranking("p", ["a", "b", "c", "d"], [[0, 1], [2, 3]])
    loss, n = reward.ranking_loss(scores, tied)
    assert n == 4  # no pair inside a tier
    assert loss.item() == pytest.approx(sum(map(_pair_loss, [2, 1.5, 1, 0.5])) / 4)

    # Margin: tier distance times margin_scale is subtracted from each difference.
    loss, _ = reward.ranking_loss(scores, Ranking("p", ["a", "b", "c", "d"], [[0], [1], [2, 3]]), 0.5)
    expected_m = [(2 - 1) - 0.5, (2 - 0) - 1.0, (2 - 0.5) - 1.0, (1 - 0) - 0.5, (1 - 0.5) - 0.5]
    assert loss.item() == pytest.approx(sum(map(_pair_loss, expected_m)) / 5)


def test_no_pairs_from_full_ties_or_all_bad() -> None:
    scores = torch.tensor([1.0, 0.0, 3.0], requires_grad=True)
    for ranking in (
        Ranking("p", ["a", "b", "c"], [[0, 1, 2]]),
        Ranking("p", ["a", "b", "c"], [[2], [0], [1]], all_bad=True),
    ):
        loss, n = reward.ranking_loss(scores, ranking)
        assert n == 0
        assert loss.item() == 0.0
        loss.backward()  # still part of the graph: distributed backward passes need that
        assert scores.grad is not None and torch.all(scores.grad == 0)


def test_split_holds_out_whole_prompts_reproducibly() -> None:
    rankings = marker_rankings(20, seed=3)
    # A second annotator ranked the first 10 prompts too.
    rankings += [Ranking(r.prompt, r.candidates, list(reversed(r.tiers))) for r in rankings[:10]]
    split = split_by_prompt(rankings, 0.25, seed=9)
    train_prompts = {r.prompt for r in split.train}
    heldout_prompts = {r.prompt for r in split.heldout}
    assert not train_prompts & heldout_prompts
    assert len(heldout_prompts) == 5 and len(split.train) + len(split.heldout) == 30
    assert sorted(heldout_prompts) == split.heldout_prompts
    assert split_by_prompt(list(reversed(rankings)), 0.25, seed=9).heldout_prompts == split.heldout_prompts
    assert split_by_prompt(rankings, 0.25, seed=10).heldout_prompts != split.heldout_prompts
    assert split_by_prompt(rankings[:1], 0.5, seed=0).heldout == []


def test_split_too_small_to_judge_by_holds_nothing_out() -> None:
    rankings = marker_rankings(20, seed=3)
    # 25% of 20 prompts is 5: held out when 5 are enough, everything trains when 6 are asked for.
    assert len(split_by_prompt(rankings, 0.25, seed=9, min_heldout=5).heldout_prompts) == 5
    small = split_by_prompt(rankings, 0.25, seed=9, min_heldout=6)
    assert small.heldout == [] and small.heldout_prompts == [] and len(small.train) == 20


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_gpt2"])
def test_k_forward_passes_equal_naive_pairwise_loss_and_gradients(
    backbone: str, request: pytest.FixtureRequest
) -> None:
    path = str(request.getfixturevalue(backbone))
    cfg = reward.RewardConfig(base_model=path, lora_dropout=0.0, max_length=64, margin_scale=0.3)
    tokenizer = load_tokenizer(path, padding_side="right")
    torch.manual_seed(0)
    model = reward.build_reward_model(path, tokenizer, cfg)
    # LoRA B starts at zero (no gradient reaches A); random weights make every gradient non-trivial.
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    model.eval()
    # Different lengths, so the K-batch is padded; a tie and three tiers, so margins differ.
    ranking = Ranking(
        "tell me about the moon",
        ["the moon is big", "it is a small white stone", "no", "the moon is old and white and far"],
        [[1], [0, 3], [2]],
    )
    trainable = [p for p in model.parameters() if p.requires_grad]

    scores = reward.score_texts(model, tokenizer, ranking.prompt, ranking.candidates, cfg.max_length)
    k_loss, n_pairs = reward.ranking_loss(scores, ranking, cfg.margin_scale)
    k_grads = torch.autograd.grad(k_loss, trainable)

    naive = reward.naive_pairwise_loss(model, tokenizer, ranking, cfg)
    naive_grads = torch.autograd.grad(naive, trainable)

    assert n_pairs == 5
    assert k_loss.item() > 0.01
    torch.testing.assert_close(k_loss, naive, rtol=1e-5, atol=1e-6)
    for kg, ng in zip(k_grads, naive_grads, strict=True):
        torch.testing.assert_close(kg, ng, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in k_grads)


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_gpt2"])
def test_reward_model_learns_a_clear_preference(
    backbone: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = str(request.getfixturevalue(backbone))
    rankings = marker_rankings(60, seed=0)
    cfg = reward.RewardConfig(
        base_model=path, lr=2e-3, epochs=8, batch_size=4, max_length=64, eval_every=6, patience=3, seed=0
    )
    calls: list[tuple[int, int, float]] = []
    result = reward.train_reward_model(
        cfg, rankings, tmp_path / "rm", progress=lambda s, n, loss: calls.append((s, n, loss))
    )
    m = result.metrics
    assert m["heldout_accuracy"] > 0.8, m
    assert m["heldout_loss"] < m["initial_heldout_loss"]
    assert m["heldout_prompts"] == 12 and m["train_rankings"] == 48
    assert 0 < m["train_seconds"] < m["seconds"]
    assert (
        m["heldout_pairs"] == len(result.heldout_pairs) == len(ranking_to_pairs(rankings)) - m["train_pairs"]
    )
    # Progress: every step, in order, against a fixed total.
    assert [c[0] for c in calls] == list(range(1, m["steps"] + 1))
    assert {c[1] for c in calls} == {m["total_steps"]}
    assert all(math.isfinite(c[2]) for c in calls)

    # The saved adapter + head reproduce the reported held-out numbers, and prefer the marker.
    rm = reward.load_reward_model(tmp_path / "rm")
    evaluated = reward.evaluate_reward_model(rm, result.heldout_pairs)
    assert evaluated.count == m["heldout_pairs"]
    assert evaluated.accuracy == pytest.approx(m["heldout_accuracy"])
    assert evaluated.loss == pytest.approx(m["heldout_loss"], rel=1e-4)
    with_marker, without = rm.score("a new question", [f"the {MARKER} is good", "the cat is good"])
    assert with_marker > without


def test_early_stopping_keeps_the_best_checkpoint(tiny_llama: Path, tmp_path: Path) -> None:
    import random

    rng = random.Random(1)
    # No signal: tiers are random, so held-out loss soon stops improving.
    noisy = [
        Ranking(r.prompt, r.candidates, [[i] for i in rng.sample(range(4), 4)]) for r in marker_rankings(40)
    ]
    cfg = reward.RewardConfig(
        base_model=str(tiny_llama), lr=5e-3, epochs=20, batch_size=4, max_length=64, eval_every=2, patience=2
    )
    result = reward.train_reward_model(cfg, noisy, tmp_path / "rm")
    m = result.metrics
    assert m["stopped_early"] and m["steps"] < m["total_steps"]
    # The untrained head (step 0) is the baseline, never the kept checkpoint.
    assert result.history[0]["step"] == 0
    losses = [h["heldout_loss"] for h in result.history[1:]]
    assert m["heldout_loss"] == min(losses)
    assert 0 < m["best_step"] < m["steps"]
    saved = reward.evaluate_reward_model(tmp_path / "rm", result.heldout_pairs)
    assert saved.loss == pytest.approx(min(losses), rel=1e-4)
    assert saved.loss < losses[-1]


def test_the_untrained_head_is_never_kept(tiny_llama: Path, tmp_path: Path) -> None:
    from worker.data import split_by_prompt

    # Training labels reversed, held-out ones right: every update makes the held-out loss worse than the
    # untrained head's.
    rankings = marker_rankings(40)
    heldout = set(split_by_prompt(rankings, 0.25, 0).heldout_prompts)
    mixed = [
        r if r.prompt in heldout else Ranking(r.prompt, r.candidates, list(reversed(r.tiers)))
        for r in rankings
    ]
    cfg = reward.RewardConfig(
        base_model=str(tiny_llama), lr=5e-3, epochs=2, batch_size=4, max_length=64, heldout_fraction=0.25
    )
    result = reward.train_reward_model(cfg, mixed, tmp_path / "rm")
    m = result.metrics
    assert m["heldout_loss"] > m["initial_heldout_loss"]  # training hurt on held-out ...
    assert m["best_step"] >= 1  # ... and still the published head is a trained one
    saved = reward.evaluate_reward_model(tmp_path / "rm", result.heldout_pairs)
    assert saved.loss == pytest.approx(m["heldout_loss"], rel=1e-4)


def test_too_few_heldout_prompts_train_on_everything(tiny_llama: Path, tmp_path: Path) -> None:
    rankings = marker_rankings(20)  # 20 prompts: a 0.2 share is 4 prompts, under the minimum of 5
    cfg = reward.RewardConfig(
        base_model=str(tiny_llama), epochs=1, batch_size=4, max_length=64, min_heldout_prompts=5
    )
    result = reward.train_reward_model(cfg, rankings, tmp_path / "rm")
    m = result.metrics
    assert m["heldout_prompts"] == 0 and m["heldout_accuracy"] is None and not result.heldout_pairs
    assert m["train_rankings"] == 20 and m["best_step"] == m["steps"] == 5


def test_nothing_to_learn_is_an_error(tiny_llama: Path, tmp_path: Path) -> None:
    ties = [Ranking(f"prompt {i}", ["a", "b"], [[0, 1]]) for i in range(4)]
    with pytest.raises(ValueError, match="no training pairs"):
        reward.train_reward_model(reward.RewardConfig(base_model=str(tiny_llama)), ties, tmp_path / "rm")
    assert not (tmp_path / "rm").exists()


def test_evaluate_without_pairs(tiny_llama: Path, tmp_path: Path) -> None:
    cfg = reward.RewardConfig(base_model=str(tiny_llama), epochs=1, max_length=32)
    reward.train_reward_model(cfg, marker_rankings(6), tmp_path / "rm")
    empty = reward.evaluate_reward_model(tmp_path / "rm", [])
    assert empty.count == 0 and math.isnan(empty.accuracy)


def test_pair_loss_helper_matches_torch() -> None:
    assert _pair_loss(0.7) == pytest.approx(float(-F.logsigmoid(torch.tensor(0.7))))
