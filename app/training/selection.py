"""Active selection: which prompts get new comparison sets, and which open sets are handed out first.

A round's `selection` setting (app.training.config) is `random` (the default: the prompts that need work
most, every new set handed out in the usual order) or `uncertainty`: the worker writes candidates for a pool
of `selection_pool` times as many prompts as it needs, the newest reward model scores them, and the sets it
is least sure how to rank are kept and handed out first, mixed with a documented share of random picks
(`selection_random_share`) so that the reward model still sees data where it is (perhaps wrongly) confident.

Uncertainty of a set: the mean over its candidate pairs of 4 p (1 - p), p = sigmoid(r_i - r_j) the reward
model's Bradley-Terry probability that i beats j. 1 when every score is equal (a coin toss for each pair),
towards 0 when the scores are far apart; a small spread of scores is high uncertainty. Pure functions,
import-light: the worker chooses with them, tests check them without a model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

SELECTIONS = ("random", "uncertainty")


def uncertainty(scores: Sequence[float]) -> float | None:
    """Mean pairwise 4 p (1 - p) of the reward scores (1: all equal); None with fewer than two."""
    if len(scores) < 2:
        return None
    total = 0.0
    pairs = 0
    for a, b in combinations(scores, 2):
        p = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, a - b))))
        total += 4.0 * p * (1.0 - p)
        pairs += 1
    return total / pairs


def spread(scores: Sequence[float]) -> float | None:
    """Highest minus lowest reward score; None with fewer than two."""
    return max(scores) - min(scores) if len(scores) >= 2 else None


@dataclass(frozen=True)
class Pick:
    index: int  # into the pool given to choose()
    pick: str  # "uncertain" (among the most uncertain) or "random" (the coverage share)
    priority: float  # hand-out priority in (0, 1]: the first set handed out has 1

    def stored(
        self, selection: str, scores: Sequence[float], reward_version_id: int | None
    ) -> dict[str, Any]:
        """What a set keeps of how it was chosen (comparison_sets.selection_scores)."""
        return scored(selection, scores, reward_version_id) | {"pick": self.pick}


def scored(selection: str, scores: Sequence[float], reward_version_id: int | None) -> dict[str, Any]:
    """A set's reward scores (candidate order) and their uncertainty and spread, for analysis."""
    return {
        "selection": selection,
        "reward_version_id": reward_version_id,
        "scores": [round(float(s), 6) for s in scores],
        "uncertainty": uncertainty(scores),
        "spread": spread(scores),
    }


def choose(uncertainties: Sequence[float | None], n: int, random_share: float, seed: int) -> list[Pick]:
    """`n` of the pool (at most all), in hand-out order: round(n * random_share) picked at random from those
    not among the most uncertain, the rest the most uncertain (unknown uncertainty counts as the least). The
    random picks are spread evenly through the order, so each stretch of the queue has its share of them;
    priority falls from 1 by 1/n per place."""
    n = min(n, len(uncertainties))
    if n <= 0:
        return []
    n_random = min(n, round(n * random_share))
    rng = random.Random(seed)
    # Most uncertain first; ties broken at random so equal scores do not favour the pool's order.
    keys = [(-(u if u is not None else -1.0), rng.random(), i) for i, u in enumerate(uncertainties)]
    ranked = [i for _, _, i in sorted(keys)]
    uncertain = ranked[: n - n_random]
    randoms = rng.sample(ranked[n - n_random :], n_random)
    # Random pick j goes to place round((j + 0.5) * n / n_random): evenly spread, never all at one end.
    slots = {min(n - 1, int((j + 0.5) * n / n_random)) for j in range(n_random)} if n_random else set()
    while len(slots) < n_random:  # rounding collisions (only when random_share is near 1)
        slots.add(next(s for s in range(n) if s not in slots))
    order: list[Pick] = []
    u_iter, r_iter = iter(uncertain), iter(randoms)
    for place in range(n):
        is_random = place in slots
        index = next(r_iter) if is_random else next(u_iter)
        order.append(Pick(index, "random" if is_random else "uncertain", round(1.0 - place / n, 6)))
    return order
