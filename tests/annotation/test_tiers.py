"""Tier validation and the pairs a ranking implies."""

from __future__ import annotations

import pytest

from app.annotation.tiers import validate_tiers
from app.errors import Invalid
from app.training.pairs import Pair, pairs_from_tiers


def test_valid_tiers_are_normalised():
    assert validate_tiers([[3], [2, 1]], [1, 2, 3]) == [[3], [1, 2]]


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([], "at least one tier"),
        ([[1], []], "tier 2 is empty"),
        ([[1, 1], [2]], "more than once"),
        ([[1], [2], [9]], "not in this set"),
        ([[1]], "left unranked"),
    ],
)
def test_invalid_tiers_say_why(tiers, message):
    with pytest.raises(Invalid, match=message):
        validate_tiers(tiers, [1, 2])


def test_pairs_skip_ties_and_carry_tier_distance():
    assert pairs_from_tiers([[1], [2, 3], [4]]) == [
        Pair(1, 2, 1),
        Pair(1, 3, 1),
        Pair(1, 4, 2),
        Pair(2, 4, 1),
        Pair(3, 4, 1),
    ]
    assert pairs_from_tiers([[1, 2]]) == []
