"""Head-to-head human win-rates between two model versions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.quality.intervals import DEFAULT_BOOTSTRAP_ROUNDS, CIMethod, proportion
from app.quality.outcomes import VersionOutcome


@dataclass(frozen=True)
class WinRate:
    """How often version_a's candidate was preferred over version_b's, ties counted as half a win."""

    version_a: int
    version_b: int
    wins: int
    losses: int
    ties: int
    comparisons: int  # candidate pairs: wins + losses + ties
    rankings: int  # distinct rankings those pairs came from
    rate: float  # (wins + ties / 2) / comparisons; NaN without comparisons
    low: float
    high: float


def win_rate(
    outcomes: Iterable[VersionOutcome],
    version_a: int,
    version_b: int,
    *,
    confidence: float = 0.95,
    method: CIMethod = "wilson",
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    seed: int | None = 0,
) -> WinRate:
    """Win-rate of version_a against version_b with a confidence interval (Wilson by default)."""
    if version_a == version_b:
        raise ValueError("a win-rate needs two different versions")
    low_v, high_v = min(version_a, version_b), max(version_a, version_b)
    scores: list[float] = []
    clusters: list[int] = []
    for o in outcomes:
        if (o.version_a, o.version_b) != (low_v, high_v):
            continue
        # Outcomes are stored from the lower id's side; flip when the caller asks the other way round.
        scores.append(o.score_a if version_a == low_v else 1.0 - o.score_a)
        clusters.append(o.ranking)
    return _summarise(version_a, version_b, scores, clusters, confidence, method, rounds, seed)


def win_rates(
    outcomes: Sequence[VersionOutcome],
    *,
    confidence: float = 0.95,
    method: CIMethod = "wilson",
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    seed: int | None = 0,
) -> list[WinRate]:
    """Win-rate of the lower id against the higher id for every version pair that met, sorted by ids."""
    grouped: dict[tuple[int, int], tuple[list[float], list[int]]] = {}
    for o in outcomes:
        scores, clusters = grouped.setdefault((o.version_a, o.version_b), ([], []))
        scores.append(o.score_a)
        clusters.append(o.ranking)
    return [
        _summarise(a, b, scores, clusters, confidence, method, rounds, seed)
        for (a, b), (scores, clusters) in sorted(grouped.items())
    ]


def _summarise(
    version_a: int,
    version_b: int,
    scores: list[float],
    clusters: list[int],
    confidence: float,
    method: CIMethod,
    rounds: int,
    seed: int | None,
) -> WinRate:
    """Counts, rate and interval of one version pair's scores (seen from version_a)."""
    result = proportion(scores, clusters, confidence=confidence, method=method, rounds=rounds, seed=seed)
    return WinRate(
        version_a=version_a,
        version_b=version_b,
        wins=sum(1 for s in scores if s == 1.0),
        losses=sum(1 for s in scores if s == 0.0),
        ties=sum(1 for s in scores if s == 0.5),
        comparisons=len(scores),
        rankings=len(set(clusters)),
        rate=result.estimate,
        low=result.low,
        high=result.high,
    )
