"""What keeps a round fast on a CPU without changing what it learns: length-bucketed batches that keep every
example once, each distinct reply scored once, reference log-probabilities computed once, LoRA on the top
layers only, and step/total plus an ETA reported before the first step."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.worker.conftest import marker_rankings
from tests.worker.test_policy_dpo import _cfg, marker_pairs
from worker import policy_dpo, reward
from worker.data import (
    BestCheckpoint,
    BucketBatchSampler,
    PreferencePair,
    WorkMeter,
    length_buckets,
    ranking_to_pairs,
    widest_gap_first,
)
from worker.models import load_tokenizer, top_layers


class Recorder:
    """A progress callback with the `eta` method the round's ProgressReporter has."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, float | None]] = []

    def __call__(self, step: int, total: int, loss: float) -> None:
        self.events.append(("step", step, total, loss))

    def eta(self, step: int, total: int, seconds: float | None) -> None:
        self.events.append(("eta", step, total, seconds))


@pytest.mark.parametrize(
    ("n", "batch", "window"), [(0, 4, 16), (1, 4, 16), (37, 4, 2), (100, 8, 16), (9, 3, 1)]
)
def test_length_buckets_keep_every_example_exactly_once(n: int, batch: int, window: int) -> None:
    lengths = [random.Random(n).randint(1, 500) for _ in range(n)]
    batches = length_buckets(lengths, batch, seed=3, window=window)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert len(batches) == math.ceil(n / batch) and all(0 < len(b) <= batch for b in batches)
    assert batches == length_buckets(lengths, batch, seed=3, window=window)  # seeded


def test_length_buckets_pad_less_than_random_batches() -> None:
    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(10, 60), rng.randint(300, 600)]) for _ in range(400)]

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    order = list(range(400))
    rng.shuffle(order)
    random_batches = [order[i : i + 4] for i in range(0, 400, 4)]
    assert padded(length_buckets(lengths, 4, seed=0)) < 0.8 * padded(random_batches)


def test_a_capped_update_budget_takes_the_widest_rank_gaps_first() -> None:
    # Ten K=4 rankings without ties: per ranking one pair 3 tiers apart, two 2 apart, three neighbours.
    pairs = [
        PreferencePair(f"p{r}", f"c{a}", f"c{b}", margin=b - a)
        for r in range(10)
        for a in range(4)
        for b in range(a + 1, 4)
    ]
    random.Random(0).shuffle(pairs)
    kept = widest_gap_first(pairs, 20, seed=1)
    assert kept == sorted(set(kept)) and len(kept) == 20
    margins = sorted((pairs[i].margin for i in kept), reverse=True)
    # Every ranking's best-versus-worst pair, then half of the 2-apart pairs; no neighbours.
    assert margins == [3] * 10 + [2] * 10
    assert widest_gap_first(pairs, 20, seed=1) == kept and widest_gap_first(pairs, 20, seed=2) != kept
    assert widest_gap_first(pairs, 100, seed=1) == list(range(len(pairs)))


def test_bucket_sampler_reshuffles_each_epoch() -> None:
    sampler = BucketBatchSampler(list(range(50)), 4, seed=0)
    first, second = list(sampler), list(sampler)
    assert first != second and len(sampler) == len(first) == 13
    assert sorted(i for b in second for i in b) == list(range(50))


def test_work_meter_eta_from_units() -> None:
    meter = WorkMeter(100)
    assert meter.eta() is None
    meter.add(25)
    eta = meter.eta()
    assert eta is not None and eta >= 0


def test_top_layers() -> None:
    class Config:
        num_hidden_layers = 30

    assert top_layers(Config(), 1.0) is None
    assert top_layers(Config(), 0.34) == list(range(20, 30))
    assert top_layers(Config(), 0.01) == [29]


def test_scoring_each_distinct_reply_once_gives_the_pairwise_scores(tiny_llama: Path) -> None:
    cfg = reward.RewardConfig(base_model=str(tiny_llama), max_length=64)
    tokenizer = load_tokenizer(str(tiny_llama), padding_side="right")
    model = reward.build_reward_model(str(tiny_llama), tokenizer, cfg).eval()
    rm = reward.RewardModel(model, tokenizer, cfg.max_length)
    pairs = ranking_to_pairs(marker_rankings(6, k=4, seed=1))
    got = reward.evaluate_reward_model(rm, pairs, batch_size=3)
    with torch.no_grad():
        diffs = torch.tensor(
            [
                float(reward.score_texts(model, tokenizer, p.prompt, [p.chosen], 64)[0])
                - float(reward.score_texts(model, tokenizer, p.prompt, [p.rejected], 64)[0])
                for p in pairs
            ]
        )
    assert got.count == len(pairs)
    assert got.accuracy == pytest.approx(float((diffs > 0).float().mean()))
    assert got.loss == pytest.approx(float(-torch.nn.functional.logsigmoid(diffs).mean()), abs=1e-5)


def test_reward_reports_total_and_eta_before_the_first_step(tiny_llama: Path, tmp_path: Path) -> None:
    cfg = reward.RewardConfig(
        base_model=str(tiny_llama), epochs=1, batch_size=4, max_length=64, lora_top_layers=0.5
    )
    progress = Recorder()
    result = reward.train_reward_model(cfg, marker_rankings(20, seed=2), tmp_path / "rm", progress=progress)
    first = progress.events[0]
    assert first[0] == "eta" and first[1] == 0 and first[2] == result.metrics["total_steps"]
    before_step = [
        e
        for e in progress.events[: progress.events.index(next(e for e in progress.events if e[0] == "step"))]
    ]
    # The initial held-out evaluation already gives an ETA, before any optimizer step.
    assert any(e[0] == "eta" and e[3] is not None for e in before_step)
    steps = [e[1] for e in progress.events if e[0] == "step"]
    assert steps == list(range(1, result.metrics["steps"] + 1))


def test_reward_lora_on_top_layers_only(tiny_llama: Path) -> None:
    cfg = reward.RewardConfig(base_model=str(tiny_llama), lora_top_layers=0.5)  # tiny llama: 2 layers
    tokenizer = load_tokenizer(str(tiny_llama), padding_side="right")
    model = reward.build_reward_model(str(tiny_llama), tokenizer, cfg)
    lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert lora and all(".layers.1." in n for n in lora)


def test_all_linear_lora_on_top_layers_only(tiny_llama: Path) -> None:
    """all-linear with a layer share: every linear module of the top layers, none below (PEFT alone would
    adapt every layer and the backward pass would run through all of them)."""
    cfg = reward.RewardConfig(
        base_model=str(tiny_llama), lora_top_layers=0.5, lora_target_modules="all-linear"
    )
    tokenizer = load_tokenizer(str(tiny_llama), padding_side="right")
    model = reward.build_reward_model(str(tiny_llama), tokenizer, cfg)
    lora = {n.split(".lora_")[0] for n, p in model.named_parameters() if p.requires_grad and "lora_" in n}
    assert lora and all(".layers.1." in n for n in lora)
    adapted = {n.rsplit(".", 1)[-1] for n in lora}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= adapted


def test_dpo_with_precomputed_reference_starts_at_log2_and_caps_its_pairs(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """A fresh adapter is the reference, so the first step's loss is exactly -log sigmoid(0) = log 2: the
    precomputed reference log-probabilities equal the policy's own. max_steps trains on that many batches."""
    progress = Recorder()
    result = policy_dpo.train_dpo(
        _cfg(tiny_llama, max_steps=2, logging_steps=1, heldout_fraction=0.0, lora_top_layers=0.5),
        marker_pairs(24, seed=0),
        tmp_path / "policy",
        progress=progress,
    )
    steps = [e for e in progress.events if e[0] == "step"]
    assert steps[0][1] == 1 and steps[0][3] == pytest.approx(math.log(2), abs=1e-4)
    assert result.metrics["steps"] == result.metrics["total_steps"] == 2
    first = progress.events[0]
    assert first[0] == "eta" and first[1:3] == (0, 2)
    # The reference pass reports an ETA before the first optimizer step.
    assert any(e[0] == "eta" and e[3] is not None for e in progress.events[: progress.events.index(steps[0])])


def test_best_checkpoint_keeps_the_best_evaluation_and_stops_after_patience() -> None:
    @dataclass
    class Eval:
        loss: float

    saved: list[int] = []
    best = BestCheckpoint(2, {"w": 0}, Eval(0.7))
    for step, loss in [(1, 0.8), (2, 0.6), (3, 0.65)]:
        assert best.observe(step, Eval(loss), lambda s=step: (saved.append(s), {"w": s})[1]) is False
    # The state is copied only on an improvement; the next miss in a row ends the run.
    assert saved == [2] and (best.step, best.loss, best.state) == (2, 0.6, {"w": 2})
    assert best.observe(4, Eval(0.61), dict) is True and best.step == 2
    untrained = BestCheckpoint(1, {"w": 0})
    assert untrained.loss == math.inf and untrained.observe(1, Eval(9.0), dict) is False
