"""The plain ranking data every statistic reads, and small helpers over tiers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Tiers = Sequence[Sequence[int]]


@dataclass(frozen=True)
class RankingRecord:
    """One annotator's ranking of one comparison set: tiers best first, several ids in a tier are a tie."""

    set_id: int
    annotator_id: int
    tiers: Tiers
    all_bad: bool = False
    # Candidate ids in the order the annotator saw them; empty when unknown (e.g. imported rankings).
    display_order: Sequence[int] = ()

    def __post_init__(self) -> None:
        # Tuples so a record is immutable and hashable even when built from JSON lists.
        tiers = tuple(tuple(int(c) for c in tier) for tier in self.tiers)
        object.__setattr__(self, "tiers", tiers)
        object.__setattr__(self, "display_order", tuple(int(c) for c in self.display_order))
        check_tiers(tiers)

    @classmethod
    def of(cls, row: Any) -> RankingRecord:
        """Build a record from anything with the Ranking ORM attributes (ORM row, export row, namespace)."""
        return cls(
            set_id=row.set_id,
            annotator_id=row.annotator_id,
            tiers=row.tiers,
            all_bad=bool(row.all_bad),
            display_order=tuple(row.display_order or ()),
        )

    @property
    def candidates(self) -> frozenset[int]:
        """The candidate ids this ranking orders."""
        return frozenset(c for tier in self.tiers for c in tier)


def check_tiers(tiers: Tiers) -> None:
    """Raise ValueError for an empty tier or a candidate ranked twice (statistics would be silently wrong)."""
    seen: set[int] = set()
    for index, tier in enumerate(tiers):
        if not tier:
            raise ValueError(f"tier {index + 1} is empty")
        for c in tier:
            if c in seen:
                raise ValueError(f"candidate {c} ranked more than once")
            seen.add(c)


def tier_of(tiers: Tiers) -> dict[int, int]:
    """Candidate id -> index of its tier (0 is best)."""
    return {c: index for index, tier in enumerate(tiers) for c in tier}


def mid_ranks(tiers: Tiers) -> dict[int, float]:
    """Candidate id -> rank position 1..K, tied candidates sharing the mean of the positions they span.

    Mid-ranks (fractional ranking) keep the sum of positions at K(K+1)/2 whatever the ties, so a tie is
    halfway between the orders it could be resolved into; Kendall's tau-b and Spearman use the same.
    """
    ranks: dict[int, float] = {}
    above = 0
    for tier in tiers:
        rank = above + (len(tier) + 1) / 2
        for c in tier:
            ranks[c] = rank
        above += len(tier)
    return ranks


def preference(tiers_of: dict[int, int], a: int, b: int) -> int:
    """+1 when a is ranked above b, -1 when below, 0 when tied."""
    ta, tb = tiers_of[a], tiers_of[b]
    return (ta < tb) - (ta > tb)
