"""Preference pairs implied by a ranking's tiers: the one rule web exports, statistics and training share.

Pure: no database, no web, no ML imports, so the worker may import it as part of the training contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Pair(NamedTuple):
    chosen: int
    rejected: int
    margin: int  # tier distance: 1 for neighbours


def pairs_from_tiers(tiers: Sequence[Sequence[int]]) -> list[Pair]:
    """Every (better, worse) pair a ranking implies; tied candidates give no pair."""
    pairs: list[Pair] = []
    for i, upper in enumerate(tiers):
        for j in range(i + 1, len(tiers)):
            for chosen in upper:
                for rejected in tiers[j]:
                    pairs.append(Pair(chosen, rejected, j - i))
    return pairs
