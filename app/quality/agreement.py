"""Inter-annotator agreement on comparison sets ranked by several annotators."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np
from scipy.stats import kendalltau

from app.quality.consensus import consensus_tiers
from app.quality.records import RankingRecord, Tiers, check_tiers, mid_ranks, preference, tier_of


@dataclass(frozen=True)
class AnnotatorPairAgreement:
    """Agreement between two annotators on one set."""

    set_id: int
    annotator_a: int
    annotator_b: int
    agreeing: int  # candidate pairs both put in the same relation (>, < or tie)
    compared: int  # candidate pairs both ranked
    rate: float
    tau_b: float  # NaN when either ranking ties everything


@dataclass(frozen=True)
class PairwiseAgreement:
    """Pairwise agreement over all overlapped sets, pooled over candidate pairs."""

    rate: float  # NaN when no set was ranked twice
    agreeing: int
    compared: int
    mean_tau_b: float
    pairs: list[AnnotatorPairAgreement]


@dataclass(frozen=True)
class ConsensusAgreement:
    """How one annotator's rankings agree with the consensus of the others on the same sets."""

    annotator_id: int
    sets: int
    agreeing: int
    compared: int
    rate: float
    mean_tau_b: float


def pair_agreement(a: Tiers, b: Tiers) -> tuple[int, int]:
    """(agreeing, compared) over the candidate pairs both rankings contain.

    Each ranking puts a pair in one of three relations: first better, second better, or tied. Two rankings
    agree on a pair only in the same relation, so a tie against a strict preference is a disagreement:
    "these are equally good" and "this one is better" are different judgements, and dropping such pairs
    would reward annotators who tie everything.
    """
    tiers_a, tiers_b = tier_of(a), tier_of(b)
    common = sorted(tiers_a.keys() & tiers_b.keys())
    agreeing = compared = 0
    for x, y in combinations(common, 2):
        compared += 1
        agreeing += preference(tiers_a, x, y) == preference(tiers_b, x, y)
    return agreeing, compared


def kendall_tau_b(a: Tiers, b: Tiers) -> float:
    """Kendall's tau-b between two rankings over their common candidates; NaN if either ties them all."""
    check_tiers(a)
    check_tiers(b)
    ranks_a, ranks_b = mid_ranks(a), mid_ranks(b)
    common = sorted(ranks_a.keys() & ranks_b.keys())
    if len(common) < 2:
        return math.nan
    xs = [ranks_a[c] for c in common]
    ys = [ranks_b[c] for c in common]
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan  # tau-b's denominator is zero: a ranking that ties everything orders nothing
    # tau-b rather than tau-a: it corrects the denominator for pairs tied in either ranking, so two
    # identical rankings with ties still score 1.
    return float(kendalltau(xs, ys, variant="b").statistic)


def overlapped_sets(rankings: Iterable[RankingRecord]) -> dict[int, list[RankingRecord]]:
    """Set id -> its rankings, for sets ranked by at least two annotators (sorted by annotator)."""
    by_set: dict[int, list[RankingRecord]] = defaultdict(list)
    for r in rankings:
        by_set[r.set_id].append(r)
    result: dict[int, list[RankingRecord]] = {}
    for set_id, group in sorted(by_set.items()):
        annotators = [r.annotator_id for r in group]
        if len(set(annotators)) != len(annotators):
            # One assignment per annotator and set is a database rule; two would mean bad input here.
            raise ValueError(f"set {set_id} has several rankings by one annotator")
        if len(group) >= 2:
            result[set_id] = sorted(group, key=lambda r: r.annotator_id)
    return result


def pairwise_agreement(rankings: Iterable[RankingRecord]) -> PairwiseAgreement:
    """For every two annotators who ranked the same set, the share of candidate pairs they order alike."""
    pairs: list[AnnotatorPairAgreement] = []
    for set_id, group in overlapped_sets(rankings).items():
        for ra, rb in combinations(group, 2):
            agreeing, compared = pair_agreement(ra.tiers, rb.tiers)
            pairs.append(
                AnnotatorPairAgreement(
                    set_id=set_id,
                    annotator_a=ra.annotator_id,
                    annotator_b=rb.annotator_id,
                    agreeing=agreeing,
                    compared=compared,
                    rate=agreeing / compared if compared else math.nan,
                    tau_b=kendall_tau_b(ra.tiers, rb.tiers),
                )
            )
    agreeing = sum(p.agreeing for p in pairs)
    compared = sum(p.compared for p in pairs)
    return PairwiseAgreement(
        rate=agreeing / compared if compared else math.nan,
        agreeing=agreeing,
        compared=compared,
        mean_tau_b=_nanmean([p.tau_b for p in pairs]),
        pairs=pairs,
    )


def krippendorff_alpha_ordinal(rankings: Iterable[RankingRecord]) -> float:
    """Krippendorff's alpha (ordinal) on rank positions over all overlapped sets; NaN without variation.

    Units are (set, candidate), coders are annotators, values are mid-rank positions (tied candidates
    share the mean of their positions). Positions from sets of different sizes share one ordinal scale,
    so position 3 of 3 and position 3 of 9 count as the same value: with mixed set sizes alpha is a
    pooled summary, best read per set size if sizes differ much. Sets ranked once have no pairable
    values and do not count.
    """
    groups = overlapped_sets(rankings)
    annotators = sorted({r.annotator_id for group in groups.values() for r in group})
    units = [(set_id, c) for set_id, group in groups.items() for c in sorted(_all_candidates(group))]
    if not units:
        return math.nan
    row = {a: i for i, a in enumerate(annotators)}
    column = {u: j for j, u in enumerate(units)}
    data = np.full((len(annotators), len(units)), np.nan)
    for set_id, group in groups.items():
        for r in group:
            for c, rank in mid_ranks(r.tiers).items():
                data[row[r.annotator_id], column[(set_id, c)]] = rank
    if np.unique(data[~np.isnan(data)]).size < 2:
        return math.nan  # one value everywhere: no expected disagreement, alpha is undefined
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))


def consensus_agreement(rankings: Iterable[RankingRecord]) -> list[ConsensusAgreement]:
    """Per annotator, agreement with the consensus of the *other* annotators of each overlapped set.

    Leaving the annotator out of the consensus keeps them from agreeing with themselves, which would
    flatter everyone and most of all annotators of sets with overlap 2.
    """
    totals: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0])  # sets, agreeing, compared
    taus: dict[int, list[float]] = defaultdict(list)
    for group in overlapped_sets(rankings).values():
        for r in group:
            others = [o.tiers for o in group if o.annotator_id != r.annotator_id]
            consensus = consensus_tiers(others)
            agreeing, compared = pair_agreement(r.tiers, consensus)
            total = totals[r.annotator_id]
            total[0] += 1
            total[1] += agreeing
            total[2] += compared
            taus[r.annotator_id].append(kendall_tau_b(r.tiers, consensus))
    return [
        ConsensusAgreement(
            annotator_id=annotator,
            sets=int(sets),
            agreeing=int(agreeing),
            compared=int(compared),
            rate=agreeing / compared if compared else math.nan,
            mean_tau_b=_nanmean(taus[annotator]),
        )
        for annotator, (sets, agreeing, compared) in sorted(totals.items())
    ]


def _all_candidates(group: Sequence[RankingRecord]) -> frozenset[int]:
    """Every candidate any ranking of the group ordered."""
    return frozenset().union(*(r.candidates for r in group))


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the defined values (NaN marks an undefined tau); NaN if there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan
