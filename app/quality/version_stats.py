"""Statistics of model versions over every live ranking: blind human win-rates and Bradley-Terry ratings.

Win-rates use app.quality's Wilson interval on the SQL totals (repository.version_outcome_profiles);
Bradley-Terry ratings fit app.quality's penalised likelihood on them, and their bootstrap resamples whole
rankings like app.quality.bradley_terry does, drawing how many times each distinct per-ranking pattern is
picked (a multinomial over patterns: the same distribution as drawing rankings one by one, at the cost of
the patterns instead of the rankings). Results are cached per rankings state (cache.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.quality import repository as repo
from app.quality.bradley_terry import (
    BASE_RATING,
    DEFAULT_PRIOR,
    ELO_SCALE,
    connected_components,
    fit_log_strengths,
)
from app.quality.cache import cached
from app.quality.intervals import CONFIDENCE, wilson_interval

BOOTSTRAP_ROUNDS = 1000


@dataclass(frozen=True)
class HumanWinRate:
    """Blind human win-rate of version_a over version_b; ties count half (app.quality.win_rate, Wilson)."""

    version_a: int
    version_b: int
    wins: int
    losses: int
    ties: int
    comparisons: int
    rankings: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class OutcomeSummary:
    """Every version pair's totals plus the per-ranking patterns a bootstrap needs."""

    pairs: list[tuple[int, int]]  # (lower id, higher id), sorted
    comparisons: np.ndarray  # per pair
    score: np.ndarray  # per pair: wins + ties / 2 of the lower id
    wins: np.ndarray
    losses: np.ndarray
    rankings: np.ndarray  # per pair: rankings that compared the pair
    pattern_counts: np.ndarray  # per pattern: how many rankings show it
    pattern_score: np.ndarray  # patterns x pairs
    pattern_comparisons: np.ndarray  # patterns x pairs
    computed_at: float
    total_rankings: int  # rankings with at least one cross-version pair


def _summarise(profiles: list[repo.OutcomeProfile]) -> OutcomeSummary:
    """Totals per version pair and the pattern matrices, from the SQL profiles."""
    pairs = sorted({(p.version_a, p.version_b) for prof in profiles for p in prof.pairs})
    column = {pair: j for j, pair in enumerate(pairs)}
    g, n = len(profiles), len(pairs)
    score = np.zeros((g, n))
    comparisons = np.zeros((g, n))
    wins = np.zeros((g, n))
    losses = np.zeros((g, n))
    present = np.zeros((g, n))
    counts = np.zeros(g)
    for i, prof in enumerate(profiles):
        counts[i] = prof.rankings
        for p in prof.pairs:
            j = column[(p.version_a, p.version_b)]
            score[i, j] = p.score
            comparisons[i, j] = p.comparisons
            wins[i, j] = p.wins
            losses[i, j] = p.losses
            present[i, j] = 1
    return OutcomeSummary(
        pairs=pairs,
        comparisons=counts @ comparisons if g else np.zeros(n),
        score=counts @ score if g else np.zeros(n),
        wins=counts @ wins if g else np.zeros(n),
        losses=counts @ losses if g else np.zeros(n),
        rankings=counts @ present if g else np.zeros(n),
        pattern_counts=counts,
        pattern_score=score,
        pattern_comparisons=comparisons,
        computed_at=time.time(),
        total_rankings=int(counts.sum()),
    )


def outcome_summary(session: Session, project_id: int | None = None) -> OutcomeSummary:
    """Version-pair totals over every live ranking, or one project's (cached per rankings state)."""
    key = "outcomes" if project_id is None else f"outcomes:project:{project_id}"
    return cached(session, key, lambda s: _summarise(repo.version_outcome_profiles(s, project_id)))


def human_win_rate(summary: OutcomeSummary, version_a: int, version_b: int) -> HumanWinRate | None:
    """Version a's human win-rate against version b with a 95% Wilson interval; None if they never met."""
    low_v, high_v = min(version_a, version_b), max(version_a, version_b)
    try:
        j = summary.pairs.index((low_v, high_v))
    except ValueError:
        return None
    n = int(summary.comparisons[j])
    score = float(summary.score[j])
    wins, losses = int(summary.wins[j]), int(summary.losses[j])
    if version_a != low_v:
        # Totals are kept from the lower id's side; the other side wins what it lost.
        score, wins, losses = n - score, losses, wins
    low, high = wilson_interval(score, n, CONFIDENCE)
    return HumanWinRate(
        version_a=version_a,
        version_b=version_b,
        wins=wins,
        losses=losses,
        ties=n - wins - losses,
        comparisons=n,
        rankings=int(summary.rankings[j]),
        rate=score / n if n else math.nan,
        low=low,
        high=high,
    )


@dataclass(frozen=True)
class Rating:
    """A version's Bradley-Terry rating (Elo scale) with its bootstrap interval."""

    version: int
    rating: float
    low: float
    high: float
    comparisons: int
    component: int  # versions in different components never met, even indirectly: not comparable


@dataclass(frozen=True)
class Ratings:
    ratings: list[Rating]  # best first
    rankings: int
    rounds: int
    computed_at: float


def bradley_terry_ratings(
    summary: OutcomeSummary, *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0, prior: float = DEFAULT_PRIOR
) -> Ratings:
    """Ratings of every version that met another, like app.quality.bradley_terry (ranking bootstrap)."""
    if not summary.pairs:
        return Ratings([], 0, rounds, time.time())
    versions = sorted({v for pair in summary.pairs for v in pair})
    index = {v: i for i, v in enumerate(versions)}
    first = np.array([index[a] for a, _ in summary.pairs], dtype=np.int64)
    second = np.array([index[b] for _, b in summary.pairs], dtype=np.int64)

    def fit(won: np.ndarray, met: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        return fit_log_strengths(len(versions), first, second, won, met, prior=prior, start=start)

    def to_ratings(theta: np.ndarray) -> np.ndarray:
        return BASE_RATING + ELO_SCALE * (theta - theta.mean())

    theta = fit(summary.score.astype(np.float64), summary.comparisons.astype(np.float64))
    point = to_ratings(theta)
    rng = np.random.default_rng(seed)
    total = int(summary.pattern_counts.sum())
    probabilities = summary.pattern_counts / total
    samples = np.empty((rounds, len(versions)))
    for r in range(rounds):
        drawn = rng.multinomial(total, probabilities).astype(np.float64)
        samples[r] = to_ratings(
            fit(drawn @ summary.pattern_score, drawn @ summary.pattern_comparisons, theta)
        )
    alpha = 1 - CONFIDENCE
    comparisons = np.bincount(first, summary.comparisons, len(versions)) + np.bincount(
        second, summary.comparisons, len(versions)
    )
    components = connected_components(len(versions), first, second)
    rows = []
    for i, version in enumerate(versions):
        if rounds:
            low, high = (float(q) for q in np.quantile(samples[:, i], [alpha / 2, 1 - alpha / 2]))
        else:
            low = high = float(point[i])
        rows.append(
            Rating(version, float(point[i]), low, high, int(comparisons[i]), components[i]),
        )
    rows.sort(key=lambda r: (-r.rating, r.version))
    return Ratings(rows, summary.total_rankings, rounds, time.time())


def leaderboard_ratings(session: Session, project_id: int | None = None) -> Ratings:
    """Bradley-Terry ratings over every live ranking, or one project's: its own policy line's versions
    (cached per rankings state)."""
    key = "ratings" if project_id is None else f"ratings:project:{project_id}"
    return cached(session, key, lambda s: bradley_terry_ratings(outcome_summary(s, project_id)))
