"""Version-versus-version outcomes implied by rankings of candidates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from app.quality.records import RankingRecord
from app.training.pairs import pairs_from_tiers

AllBadPolicy = Literal["tie", "keep", "drop"]


@dataclass(frozen=True)
class VersionOutcome:
    """One candidate pair of different model versions in one ranking, seen from the lower version id."""

    ranking: int  # index of the ranking in the input: bootstraps resample whole rankings by it
    set_id: int
    annotator_id: int
    version_a: int  # always < version_b, so outcomes of one version pair aggregate without flipping
    version_b: int
    candidate_a: int
    candidate_b: int
    score_a: float  # 1.0 version_a's candidate ranked higher, 0.0 lower, 0.5 same tier


def version_outcomes(
    rankings: Iterable[RankingRecord],
    version_of: Mapping[int, int],
    *,
    all_bad: AllBadPolicy = "tie",
) -> list[VersionOutcome]:
    """Every pair of candidates from different versions in each ranking, as a win, loss or tie.

    Ties (one tier) score half a win each, as Chatbot Arena counts them. A ranking marked all-bad says
    no candidate was acceptable, so by default ("tie") every pair in it is a tie: neither version earned a
    win there. "keep" uses its tiers as ranked, "drop" leaves it out.
    """
    outcomes: list[VersionOutcome] = []
    for index, ranking in enumerate(rankings):
        if ranking.all_bad and all_bad == "drop":
            continue
        missing = sorted(ranking.candidates - version_of.keys())
        if missing:
            raise ValueError(f"no model version known for candidates {missing}")
        scored: list[tuple[int, int, float]] = []
        if ranking.all_bad and all_bad == "tie":
            ids = sorted(ranking.candidates)
            scored.extend((a, b, 0.5) for a, b in combinations(ids, 2))
        else:
            scored.extend((p.chosen, p.rejected, 1.0) for p in pairs_from_tiers(ranking.tiers))
            for tier in ranking.tiers:
                scored.extend((a, b, 0.5) for a, b in combinations(sorted(tier), 2))
        for first, second, score_first in scored:
            v1, v2 = version_of[first], version_of[second]
            if v1 == v2:
                continue  # a version against itself says nothing about versions
            if v1 > v2:
                first, second, v1, v2, score_first = second, first, v2, v1, 1.0 - score_first
            outcomes.append(
                VersionOutcome(
                    ranking=index,
                    set_id=ranking.set_id,
                    annotator_id=ranking.annotator_id,
                    version_a=v1,
                    version_b=v2,
                    candidate_a=first,
                    candidate_b=second,
                    score_a=score_first,
                )
            )
    return outcomes
