"""Position and length bias: does where a candidate was shown, or how long it is, predict that it wins?

All three statistics read the tiers as ranked, all-bad rankings included: the question is how annotators
behave, and an annotator who leaves candidates in the order shown is exactly what position bias catches.
Only rankings whose display_order lists exactly their candidates count for position bias; pass only
rankings made in the ranking page (source "web"), since imported ones carry no real display order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from app.quality.intervals import DEFAULT_BOOTSTRAP_ROUNDS, CIMethod, Proportion, proportion
from app.quality.records import RankingRecord
from app.training.pairs import pairs_from_tiers


def first_shown_win_rate(
    rankings: Iterable[RankingRecord],
    *,
    confidence: float = 0.95,
    method: CIMethod = "wilson",
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    seed: int | None = 0,
) -> Proportion:
    """How often the candidate shown first is ranked best, against the 1/K expected without bias.

    A first-shown candidate sharing the top tier with t-1 others scores 1/t: then with displays shuffled
    independently of quality its expected score is exactly 1/K, ties or not, and `expected` is the mean
    of 1/K over the rankings counted.
    """
    scores: list[float] = []
    clusters: list[int] = []
    chance: list[float] = []
    for index, r in enumerate(rankings):
        if not _has_display_order(r):
            continue
        top = r.tiers[0]
        scores.append(1 / len(top) if r.display_order[0] in top else 0.0)
        clusters.append(index)
        chance.append(1 / len(r.display_order))
    expected = sum(chance) / len(chance) if chance else None
    return proportion(
        scores, clusters, confidence=confidence, method=method, rounds=rounds, seed=seed, expected=expected
    )


def earlier_shown_preference(
    rankings: Iterable[RankingRecord],
    *,
    confidence: float = 0.95,
    method: CIMethod = "wilson",
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    seed: int | None = 0,
) -> Proportion:
    """Of strictly ordered pairs, how often the one shown earlier wins (0.5 expected without bias).

    Uses every position, not just the first, so it detects a gradual drift down the list with more data
    than `first_shown_win_rate`; tied pairs say nothing about order and are left out.
    """
    scores: list[float] = []
    clusters: list[int] = []
    for index, r in enumerate(rankings):
        if not _has_display_order(r):
            continue
        shown_at = {c: i for i, c in enumerate(r.display_order)}
        for pair in pairs_from_tiers(r.tiers):
            scores.append(1.0 if shown_at[pair.chosen] < shown_at[pair.rejected] else 0.0)
            clusters.append(index)
    return proportion(
        scores, clusters, confidence=confidence, method=method, rounds=rounds, seed=seed, expected=0.5
    )


def length_bias(
    rankings: Iterable[RankingRecord],
    lengths: Mapping[int, int],
    *,
    confidence: float = 0.95,
    method: CIMethod = "wilson",
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    seed: int | None = 0,
) -> Proportion:
    """Of strictly ordered pairs whose lengths differ, how often the longer candidate wins (0.5 expected).

    `lengths` maps candidate id to its length in whatever unit the caller picks (characters, tokens).
    Tied pairs and equal lengths carry no evidence either way and are left out. A rate above 0.5 is
    a preference for longer answers; it is bias only if length does not track quality, which this alone
    cannot tell.
    """
    scores: list[float] = []
    clusters: list[int] = []
    for index, r in enumerate(rankings):
        missing = sorted(r.candidates - lengths.keys())
        if missing:
            raise ValueError(f"no length known for candidates {missing}")
        for pair in pairs_from_tiers(r.tiers):
            chosen, rejected = lengths[pair.chosen], lengths[pair.rejected]
            if chosen != rejected:
                scores.append(1.0 if chosen > rejected else 0.0)
                clusters.append(index)
    return proportion(
        scores, clusters, confidence=confidence, method=method, rounds=rounds, seed=seed, expected=0.5
    )


def _has_display_order(r: RankingRecord) -> bool:
    """True when the display order lists each ranked candidate exactly once."""
    return len(r.display_order) == len(r.candidates) >= 2 and set(r.display_order) == r.candidates
