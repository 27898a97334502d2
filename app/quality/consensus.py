"""Consensus ranking of one comparison set from several annotators' rankings."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

from app.quality.bradley_terry import DEFAULT_PRIOR, fit_log_strengths
from app.quality.records import Tiers, check_tiers, preference, tier_of

# Strength gaps below this (in natural-log units) are a tie; the fit is accurate to ~1e-9.
TIE_TOLERANCE = 1e-6


def consensus_strengths(rankings: Sequence[Tiers], *, prior: float = DEFAULT_PRIOR) -> dict[int, float]:
    """Bradley-Terry log-strength of each candidate from every pair each ranking implies (ties = half)."""
    if not rankings:
        raise ValueError("a consensus needs at least one ranking")
    for tiers in rankings:
        check_tiers(tiers)
    candidates = sorted({c for tiers in rankings for tier in tiers for c in tier})
    index = {c: i for i, c in enumerate(candidates)}
    first: list[int] = []
    second: list[int] = []
    won: list[float] = []
    for tiers in rankings:
        tiers_of = tier_of(tiers)
        # A candidate missing from a ranking just has no pairs from it.
        for a, b in combinations(sorted(tiers_of), 2):
            first.append(index[a])
            second.append(index[b])
            won.append((preference(tiers_of, a, b) + 1) / 2)
    theta = fit_log_strengths(
        len(candidates),
        np.array(first, dtype=np.int64),
        np.array(second, dtype=np.int64),
        np.array(won, dtype=np.float64),
        np.ones(len(first)),
        prior=prior,
    )
    return {c: float(theta[i]) for c, i in index.items()}


def consensus_tiers(
    rankings: Sequence[Tiers], *, prior: float = DEFAULT_PRIOR, tolerance: float = TIE_TOLERANCE
) -> list[list[int]]:
    """Consensus tiers (best first) ordered by Bradley-Terry strength; equal strengths form one tier.

    Bradley-Terry rather than ranked pairs (Tideman): it uses every pairwise margin instead of locking
    pairs greedily, it is the same model as the version ratings, and its strengths give ties directly:
    symmetric evidence (a>b as often as b>a, or a Condorcet cycle) yields equal strengths, where ranked
    pairs would need an arbitrary tie-break. With all sets fully ranked by each annotator (a round-robin),
    the order is that of each candidate's total half-counted wins, i.e. of its mean rank.
    """
    strengths = consensus_strengths(rankings, prior=prior)
    ordered = sorted(strengths, key=lambda c: (-strengths[c], c))
    tiers: list[list[int]] = []
    previous: float | None = None
    for c in ordered:
        if previous is not None and previous - strengths[c] <= tolerance:
            tiers[-1].append(c)
        else:
            tiers.append([c])
        previous = strengths[c]
    return [sorted(tier) for tier in tiers]


def mean_tier_consensus(rankings: Sequence[tuple[Tiers, bool]]) -> tuple[list[list[int]], bool]:
    """The merge training uses with `multi_annotator=consensus`: candidates by mean tier index (Borda).

    `rankings` are (tiers, all_bad) pairs of one set. Candidates with equal means (to 6 decimals) share a
    tier. All-bad rankings carry no order and are left out of the means unless every ranking is all-bad;
    the merged ranking is all-bad when more than half of the rankings were. One ranking is returned as is.
    """
    if not rankings:
        raise ValueError("a consensus needs at least one ranking")
    for tiers, _ in rankings:
        check_tiers(tiers)
    if len(rankings) == 1:
        tiers, all_bad = rankings[0]
        return [sorted(int(c) for c in tier) for tier in tiers], bool(all_bad)
    ordered = [tiers for tiers, all_bad in rankings if not all_bad]
    all_bad = len(ordered) * 2 < len(rankings)
    positions: dict[int, list[int]] = {}
    for tiers in ordered or [tiers for tiers, _ in rankings]:
        for index, tier in enumerate(tiers):
            for c in tier:
                positions.setdefault(int(c), []).append(index)
    means = {c: round(sum(p) / len(p), 6) for c, p in positions.items()}
    merged = [sorted(c for c in means if means[c] == value) for value in sorted(set(means.values()))]
    return merged, all_bad
