"""Rankings as ordered tiers of candidate ids (best first; several ids in one tier are a tie).

Pure checks shared by web submissions and imports; the pairs a ranking implies are
app/training/pairs.py (the worker trains on them too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.errors import Invalid

MIN_CANDIDATES = 2
MAX_CANDIDATES = 9


def validate_tiers(tiers: Sequence[Sequence[int]], candidate_ids: Iterable[int]) -> list[list[int]]:
    """Check tiers cover exactly these candidates, each once, in non-empty tiers; return them normalised."""
    expected = set(candidate_ids)
    if not tiers:
        raise Invalid("a ranking needs at least one tier")
    seen: list[int] = []
    normalised: list[list[int]] = []
    for index, tier in enumerate(tiers):
        if not tier:
            raise Invalid(f"tier {index + 1} is empty")
        ids = [int(c) for c in tier]
        seen.extend(ids)
        # Order inside a tie carries no meaning: sort so identical rankings compare equal.
        normalised.append(sorted(ids))
    duplicates = sorted({c for c in seen if seen.count(c) > 1})
    if duplicates:
        raise Invalid(f"candidates ranked more than once: {duplicates}")
    unknown = sorted(set(seen) - expected)
    if unknown:
        raise Invalid(f"candidates not in this set: {unknown}")
    missing = sorted(expected - set(seen))
    if missing:
        raise Invalid(f"candidates left unranked: {missing}")
    return normalised
