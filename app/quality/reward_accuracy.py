"""Reward models against people: each reward model's pairwise accuracy on fresh human judgements.

Fresh: rankings stored after the reward model's data snapshot, of comparison sets whose candidates it
scored when the worker made them (reward_scores), so it never trained on them. Every pair of scored
candidates a ranking puts in different tiers counts: right when the reward model scores the better-ranked
one higher, half when it scores them equal. The 95% Wilson interval treats pairs as independent, like the
human win-rates on the same page (pairs of one ranking are correlated: the interval is somewhat narrow).
Next to it: the held-out accuracy the reward model had at training time (its version's metrics), with a
Wilson interval over its held-out pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.quality import reward_repository as repo
from app.quality.cache import cached
from app.quality.intervals import CONFIDENCE, wilson_interval


@dataclass(frozen=True)
class Accuracy:
    """A pairwise accuracy with its 95% Wilson interval."""

    accuracy: float  # NaN without pairs
    low: float
    high: float
    pairs: int
    rankings: int  # 0 where unknown (held-out accuracy)


def _ranking_score(tiers: list[list[int]], scores: dict[int, float]) -> tuple[float, int]:
    """(right answers, pairs) of one ranking: pairs in different tiers, both scored."""
    right, pairs = 0.0, 0
    ranked = [[c for c in tier if c in scores] for tier in tiers]
    for i, better_tier in enumerate(ranked):
        for worse_tier in ranked[i + 1 :]:
            for better in better_tier:
                for worse in worse_tier:
                    pairs += 1
                    if scores[better] > scores[worse]:
                        right += 1
                    elif scores[better] == scores[worse]:
                        right += 0.5
    return right, pairs


def _fresh(session: Session) -> dict[int, Accuracy]:
    right: dict[int, float] = {}
    pairs: dict[int, int] = {}
    rankings: dict[int, int] = {}
    for r in repo.scored_rankings(session):
        got, n = _ranking_score(r.tiers, r.scores)
        if n:
            rid = r.reward_version_id
            right[rid] = right.get(rid, 0.0) + got
            pairs[rid] = pairs.get(rid, 0) + n
            rankings[rid] = rankings.get(rid, 0) + 1
    out = {}
    for rid, n in pairs.items():
        low, high = wilson_interval(right[rid], n, CONFIDENCE)
        out[rid] = Accuracy(right[rid] / n, low, high, n, rankings[rid])
    return out


def fresh_accuracy(session: Session) -> dict[int, Accuracy]:
    """Reward version id -> its accuracy on fresh rankings (cached per rankings state; scores are stored
    with their sets, before any ranking of them)."""
    return cached(session, "reward_fresh_accuracy", _fresh)


def heldout_accuracy(metrics: dict[str, Any]) -> Accuracy | None:
    """The held-out accuracy of a reward version's metrics with a Wilson interval over its held-out pairs."""
    value, pairs = metrics.get("heldout_accuracy"), metrics.get("heldout_pairs")
    if not isinstance(value, int | float) or not math.isfinite(float(value)):
        return None
    n = int(pairs) if isinstance(pairs, int | float) and pairs > 0 else 0
    low, high = wilson_interval(float(value) * n, n, CONFIDENCE) if n else (math.nan, math.nan)
    return Accuracy(float(value), low, high, n, 0)
