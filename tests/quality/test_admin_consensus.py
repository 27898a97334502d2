"""The consensus the dashboard shows as "training merge" is the one the worker trains on."""

from __future__ import annotations

import random

import pytest

from app.quality.stats import mean_tier_consensus
from tests.admin_data import random_tiers
from worker.snapshot import RankedSet, consensus


def _ranked_set(ranking_id: int, ids: list[int], tiers: list[list[int]], all_bad: bool) -> RankedSet:
    # The worker keeps candidates in a per-ranking order and tiers as indexes into it.
    order = list(ids)
    random.Random(ranking_id).shuffle(order)
    index = {c: i for i, c in enumerate(order)}
    return RankedSet(
        ranking_id=ranking_id,
        set_id=1,
        prompt_id=1,
        prompt="p",
        candidate_ids=order,
        texts=[f"text {c}" for c in order],
        human=[False] * len(order),
        tiers=[[index[c] for c in tier] for tier in tiers],
        all_bad=all_bad,
    )


@pytest.mark.parametrize("seed", range(200))
def test_mean_tier_consensus_equals_the_workers_merge(seed):
    rng = random.Random(seed)
    ids = rng.sample(range(100, 200), rng.randint(2, 6))
    group = [(random_tiers(rng, ids, tie_chance=0.3), rng.random() < 0.25) for _ in range(rng.randint(1, 5))]
    tiers, all_bad = mean_tier_consensus(group)
    (merged,) = consensus([_ranked_set(i + 1, ids, t, b) for i, (t, b) in enumerate(group)])
    assert all_bad == merged.all_bad
    assert tiers == [sorted(merged.candidate_ids[i] for i in tier) for tier in merged.tiers]


def test_mean_tier_consensus_by_hand():
    # Means: 1 -> 0, 2 -> 1.5, 3 -> 1.5 (a tie), 4 -> 2.5; the all-bad ranking carries no order.
    group = [([[1], [2], [3], [4]], False), ([[1], [3], [2, 4]], False), ([[4], [3], [2], [1]], True)]
    assert mean_tier_consensus(group) == ([[1], [2, 3], [4]], False)
    assert mean_tier_consensus([([[2, 1]], True)]) == ([[1, 2]], True)
    assert mean_tier_consensus([([[1], [2]], True), ([[2], [1]], True)]) == ([[1, 2]], True)
    with pytest.raises(ValueError):
        mean_tier_consensus([])
