"""Agreement between annotators and with the consensus (app.quality.agreement, app.quality.consensus):
Kendall tau-b, pairwise agreement, Krippendorff's ordinal alpha recomputed from its coincidence-matrix
definition, and leave-one-out consensus; expectations worked out by hand, never copied from the output.
"""

from __future__ import annotations

import math
from itertools import combinations, permutations

import numpy as np
import pytest

from app.quality.stats import (
    consensus_agreement,
    consensus_tiers,
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    pair_agreement,
    pairwise_agreement,
)
from tests.quality.test_stats import rec

# ---------------------------------------------------------------- Kendall tau-b and pairwise agreement


def test_kendall_tau_b_on_hand_computed_examples():
    assert kendall_tau_b([[1], [2], [3]], [[1], [2], [3]]) == pytest.approx(1)
    assert kendall_tau_b([[1], [2], [3]], [[3], [2], [1]]) == pytest.approx(-1)
    # Pairs (1,2): tied in b; (1,3), (2,3): concordant. tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2))
    # with n0 = 3 pairs, n1 = 0 ties in a, n2 = 1 tie in b: 2 / sqrt(3 * 2).
    assert kendall_tau_b([[1], [2], [3]], [[1, 2], [3]]) == pytest.approx(2 / math.sqrt(6))
    # a ranks 1 | 2=3 | 4, b ranks 2 | 1 | 4 | 3. (1,2) D, (1,3) C, (1,4) C, (2,3) tied in a, (2,4) C,
    # (3,4) D: C = 3, D = 2, n0 = 6, n1 = 1, n2 = 0 -> 1 / sqrt(5 * 6).
    assert kendall_tau_b([[1], [2, 3], [4]], [[2], [1], [4], [3]]) == pytest.approx(1 / math.sqrt(30))


def test_kendall_tau_b_is_undefined_when_a_ranking_ties_everything():
    assert math.isnan(kendall_tau_b([[1, 2, 3]], [[1], [2], [3]]))
    assert math.isnan(kendall_tau_b([[1], [2]], [[3], [4]]))  # nothing in common


def test_pair_agreement_treats_tie_against_preference_as_disagreement():
    # Same 4-candidate example: same relation on (1,3), (1,4), (2,4) only -> 3 of 6.
    assert pair_agreement([[1], [2, 3], [4]], [[2], [1], [4], [3]]) == (3, 6)
    assert pair_agreement([[1, 2], [3]], [[2, 1], [3]]) == (3, 3)  # tie vs tie agrees


# Three annotators, two overlapped sets, and one set ranked once (ignored by agreement).
SET_10 = {100: [[1], [2], [3]], 200: [[1], [3], [2]], 300: [[1, 2], [3]]}
SET_20 = {100: [[4], [5], [6]], 200: [[4], [5], [6]]}
PANEL = (
    [rec(10, a, t) for a, t in SET_10.items()]
    + [rec(20, a, t) for a, t in SET_20.items()]
    + [rec(30, 300, [[7], [8]])]
)


def test_pairwise_agreement_on_three_annotators_and_two_sets():
    result = pairwise_agreement(PANEL)
    by_pair = {(p.set_id, p.annotator_a, p.annotator_b): p for p in result.pairs}
    # Set 10, pairs (1,2), (1,3), (2,3):
    # 100 vs 200: agree, agree, 2>3 vs 3>2            -> 2/3; tau = (2 - 1) / 3 = 1/3
    # 100 vs 300: 1>2 vs tie, agree, agree            -> 2/3; tau = 2 / sqrt(6) (example above)
    # 200 vs 300: 1>2 vs tie, agree, 3>2 vs 2>3       -> 1/3; tau: C = 1, D = 1 -> 0
    # Set 20: identical                               -> 3/3; tau = 1
    expected = {
        (10, 100, 200): (2, 1 / 3),
        (10, 100, 300): (2, 2 / math.sqrt(6)),
        (10, 200, 300): (1, 0.0),
        (20, 100, 200): (3, 1.0),
    }
    assert set(by_pair) == set(expected)
    for key, (agreeing, tau) in expected.items():
        assert by_pair[key].agreeing == agreeing and by_pair[key].compared == 3
        assert by_pair[key].tau_b == pytest.approx(tau, abs=1e-12)
    assert (result.agreeing, result.compared) == (8, 12)
    assert result.rate == pytest.approx(8 / 12)
    assert result.mean_tau_b == pytest.approx((1 / 3 + 2 / math.sqrt(6) + 0 + 1) / 4)


def test_two_rankings_of_a_set_by_one_annotator_are_refused():
    with pytest.raises(ValueError, match="several rankings by one annotator"):
        pairwise_agreement([rec(1, 5, [[1], [2]]), rec(1, 5, [[2], [1]])])


def test_no_overlap_no_agreement():
    result = pairwise_agreement([rec(1, 1, [[1], [2]]), rec(2, 2, [[3], [4]])])
    assert math.isnan(result.rate) and result.pairs == []


# ---------------------------------------------------------------- Krippendorff's alpha


def alpha_ordinal_by_definition(data: list[list[float | None]]) -> float:
    """Krippendorff's ordinal alpha from his definitions (coders x units, None = missing).

    Coincidences o_ck = sum over units of (ordered pairs of values c, k from different coders) / (m_u - 1)
    over units with m_u >= 2 values; n_c = sum_k o_ck; ordinal distance
    delta_ck = (sum of n_g for g from c to k - (n_c + n_k) / 2)^2;
    alpha = 1 - (n - 1) * sum o_ck delta_ck / sum n_c n_k delta_ck.
    """
    values = sorted({v for row in data for v in row if v is not None})
    where = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in zip(*data, strict=True):
        present = [v for v in unit if v is not None]
        if len(present) < 2:
            continue
        for i, j in permutations(range(len(present)), 2):
            o[where[present[i]], where[present[j]]] += 1 / (len(present) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = np.zeros_like(o)
    for c, k in combinations(range(len(values)), 2):
        delta[c, k] = delta[k, c] = (n_c[c : k + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2
    return float(1 - (n - 1) * (o * delta).sum() / (np.outer(n_c, n_c) * delta).sum())


def test_reference_alpha_reproduces_krippendorffs_published_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", 4 observers x 12 units with
    # missing values; published ordinal alpha = 0.815. Validates the reference used below.
    n = None
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    assert alpha_ordinal_by_definition(data) == pytest.approx(0.815, abs=5e-4)


def test_alpha_on_a_hand_computed_pair_of_rankings():
    # Annotators rank x=1, y=2, z=3 as 1,2,3 and 1,3,2. Units (candidates) hold values (1,1), (2,3),
    # (3,2). Coincidences: o_11 = 2, o_23 = o_32 = 2; n_1 = n_2 = n_3 = 2, n = 6.
    # Ordinal distances: d_12 = d_23 = (2 + 2 - 2)^2 = 4, d_13 = (2 + 2 + 2 - 2)^2 = 16.
    # Observed sum o*d = 2*4 + 2*4 = 16; expected sum n_c n_k d = 2*(4*4) + 2*(4*4) + 2*(4*16) = 192.
    # alpha = 1 - (6 - 1) * 16 / 192 = 7/12.
    rankings = [rec(1, 1, [[1], [2], [3]]), rec(1, 2, [[1], [3], [2]])]
    assert krippendorff_alpha_ordinal(rankings) == pytest.approx(7 / 12)


def test_alpha_over_the_panel_matches_the_definition():
    # Units (set, candidate) with mid-rank values per annotator 100, 200, 300 (None: did not rank it).
    n = None
    data = [
        [1, 2, 3, 1, 2, 3],  # annotator 100: set 10 then set 20
        [1, 3, 2, 1, 2, 3],  # annotator 200
        [1.5, 1.5, 3, n, n, n],  # annotator 300 tied 1 and 2 at positions 1-2; never saw set 20
    ]
    assert krippendorff_alpha_ordinal(PANEL) == pytest.approx(alpha_ordinal_by_definition(data), abs=1e-12)


def test_alpha_is_perfect_for_identical_rankings_and_undefined_without_variation():
    assert krippendorff_alpha_ordinal(
        [rec(1, 1, [[1], [2], [3]]), rec(1, 2, [[1], [2], [3]])]
    ) == pytest.approx(1)
    assert math.isnan(krippendorff_alpha_ordinal([rec(1, 1, [[1, 2]]), rec(1, 2, [[1, 2]])]))
    assert math.isnan(krippendorff_alpha_ordinal([rec(1, 1, [[1], [2]])]))


# ---------------------------------------------------------------- consensus


def test_consensus_follows_the_majority():
    # In a full round-robin, Bradley-Terry orders candidates by total half-counted wins, i.e. by mean
    # rank (see consensus_tiers). Mean ranks: a = (1+1+2)/3, b = (2+2+1)/3, c = 3.
    a, b, c = 1, 2, 3
    assert consensus_tiers([[[a], [b], [c]], [[a], [b], [c]], [[b], [a], [c]]]) == [[a], [b], [c]]


def test_consensus_ties_when_the_evidence_is_symmetric():
    # a>b and b>a, both above c: a and b have equal mean rank.
    assert consensus_tiers([[[1], [2], [3]], [[2], [1], [3]]]) == [[1, 2], [3]]
    # A Condorcet cycle: every candidate has mean rank 2.
    assert consensus_tiers([[[1], [2], [3]], [[2], [3], [1]], [[3], [1], [2]]]) == [[1, 2, 3]]
    # One ranking is its own consensus, ties included.
    assert consensus_tiers([[[4], [5, 6], [7]]]) == [[4], [5, 6], [7]]


def test_agreement_with_leave_one_out_consensus():
    # Set 10. Consensus of the two others, by mean rank:
    #  for 100: 200 + 300 -> 1: 1.25, 2: 2.25, 3: 2.5 -> 1|2|3, same as 100: 3/3, tau 1
    #  for 200: 100 + 300 -> 1: 1.25, 2: 1.75, 3: 3   -> 1|2|3; 200 says 1|3|2: 2/3, tau 1/3
    #  for 300: 100 + 200 -> 1: 1, 2: 2.5, 3: 2.5     -> 1|2=3; 300 says 1=2|3: only (1,3) agrees, 1/3;
    #           tau: (1,2) tied in 300, (1,3) C, (2,3) tied in consensus -> 1 / sqrt(2 * 2) = 0.5
    # Set 20: 100 and 200 are each other's consensus and identical: 3/3, tau 1.
    got = {c.annotator_id: c for c in consensus_agreement(PANEL)}
    assert [(got[a].sets, got[a].agreeing, got[a].compared) for a in (100, 200, 300)] == [
        (2, 6, 6),
        (2, 5, 6),
        (1, 1, 3),
    ]
    assert got[200].rate == pytest.approx(5 / 6)
    assert [got[a].mean_tau_b for a in (100, 200, 300)] == pytest.approx([1.0, (1 / 3 + 1) / 2, 0.5])
