"""Statistics layer (app.quality; agreement and consensus in test_agreement.py): every expectation is
worked out by hand in the comments or recomputed by an independent method inside the test (root-finding on
a defining equation, Hunter's MM algorithm, brute-force enumeration) — never copied from the output.
"""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pytest
from scipy.optimize import brentq

from app.quality.stats import (
    BASE_RATING,
    DEFAULT_PRIOR,
    RankingRecord,
    VersionOutcome,
    bradley_terry,
    earlier_shown_preference,
    first_shown_win_rate,
    length_bias,
    mid_ranks,
    version_outcomes,
    wilson_interval,
    win_rate,
    win_rates,
)

Z95 = 1.959963984540054  # standard-normal 97.5% quantile
ELO = 400 / math.log(10)


def rec(set_id: int, annotator: int, tiers, *, all_bad: bool = False, shown=()) -> RankingRecord:
    return RankingRecord(set_id, annotator, tiers, all_bad=all_bad, display_order=shown)


def wilson_by_root_finding(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Independent Wilson interval: the p with (p_hat - p)^2 = z^2 p (1 - p) / n, found numerically."""
    p_hat = successes / n

    def f(p: float) -> float:
        return (p_hat - p) ** 2 - z * z * p * (1 - p) / n

    # f > 0 at 0 and 1 and f < 0 strictly inside near p_hat; at p_hat = 0 or 1 that end is a trivial root.
    low = 0.0 if p_hat == 0 else brentq(f, 0.0, min(p_hat, 1 - 1e-12))
    high = 1.0 if p_hat == 1 else brentq(f, max(p_hat, 1e-12), 1.0)
    return low, high


def outcome_rows(pairs: list[tuple[int, int, float, int]]) -> list[VersionOutcome]:
    """(version_a, version_b, score_a, how many) -> outcomes, each from its own ranking."""
    rows: list[VersionOutcome] = []
    for a, b, score, count in pairs:
        for _ in range(count):
            rows.append(VersionOutcome(len(rows), 1, 1, a, b, 0, 0, score))
    return rows


# ---------------------------------------------------------------- records


def test_mid_ranks_share_the_mean_position_of_a_tie():
    # Tier [3, 7] spans positions 2 and 3 -> both get 2.5; candidate 1 is fourth.
    assert mid_ranks([[5], [3, 7], [1]]) == {5: 1.0, 3: 2.5, 7: 2.5, 1: 4.0}


@pytest.mark.parametrize(("tiers", "message"), [([[1], []], "empty"), ([[1, 2], [2]], "more than once")])
def test_malformed_tiers_are_refused(tiers, message):
    with pytest.raises(ValueError, match=message):
        rec(1, 1, tiers)


def test_record_from_orm_like_row_is_immutable_and_hashable():
    class Row:
        set_id, annotator_id, tiers, all_bad, display_order = 4, 9, [[2], [1]], False, [1, 2]

    r = RankingRecord.of(Row())
    assert (r.tiers, r.display_order, r.candidates) == (((2,), (1,)), (1, 2), frozenset({1, 2}))
    assert hash(r) == hash(RankingRecord.of(Row()))


# ---------------------------------------------------------------- outcomes

# Candidates 11 and 12 come from version 1, 21 from version 2, 31 from version 3.
VERSION_OF = {11: 1, 12: 1, 21: 2, 31: 3}
MIXED = [[21], [11, 31], [12]]


def as_tuples(outcomes):
    return sorted((o.version_a, o.version_b, o.candidate_a, o.candidate_b, o.score_a) for o in outcomes)


def test_outcomes_pair_different_versions_with_ties_as_half():
    # 21 is above everyone: loses nothing. 11 ties 31. 31 is above 12. 11 vs 12 is one version: skipped.
    # Always seen from the lower version id, so 21 beating 11 is (1, 2) with score 0.
    assert as_tuples(version_outcomes([rec(1, 1, MIXED)], VERSION_OF)) == [
        (1, 2, 11, 21, 0.0),
        (1, 2, 12, 21, 0.0),
        (1, 3, 11, 31, 0.5),
        (1, 3, 12, 31, 0.0),
        (2, 3, 21, 31, 1.0),
    ]


def test_all_bad_rankings_tie_every_pair_by_default():
    ranking = rec(1, 1, MIXED, all_bad=True)
    tied = as_tuples(version_outcomes([ranking], VERSION_OF))
    assert [t[:4] for t in tied] == [
        (1, 2, 11, 21),
        (1, 2, 12, 21),
        (1, 3, 11, 31),
        (1, 3, 12, 31),
        (2, 3, 21, 31),
    ]
    assert {t[4] for t in tied} == {0.5}
    kept = version_outcomes([ranking], VERSION_OF, all_bad="keep")
    assert as_tuples(kept) == as_tuples(version_outcomes([rec(1, 1, MIXED)], VERSION_OF))
    assert version_outcomes([ranking], VERSION_OF, all_bad="drop") == []


def test_outcomes_remember_their_ranking_and_refuse_unknown_candidates():
    outcomes = version_outcomes([rec(5, 7, [[11], [21]]), rec(6, 8, [[21], [11]])], VERSION_OF)
    assert [(o.ranking, o.set_id, o.annotator_id, o.score_a) for o in outcomes] == [
        (0, 5, 7, 1.0),
        (1, 6, 8, 0.0),
    ]
    with pytest.raises(ValueError, match=r"\[99\]"):
        version_outcomes([rec(1, 1, [[11], [99]])], VERSION_OF)


# ---------------------------------------------------------------- Wilson interval and win-rate


def test_wilson_interval_matches_hand_computation():
    # 8 of 10, z = 1.96: z^2/n = 0.38415; centre = (0.8 + 0.19207) / 1.38415 = 0.71674;
    # half = 1.96 * sqrt(0.016 + 0.0096036) / 1.38415 = 0.22658 -> (0.49016, 0.94332).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.49016, abs=5e-5)
    assert high == pytest.approx(0.94332, abs=5e-5)
    assert (low, high) == pytest.approx(wilson_by_root_finding(8, 10), abs=1e-9)


@pytest.mark.parametrize(("successes", "n"), [(2.5, 4), (0, 5), (5, 5), (13.5, 40)])
def test_wilson_interval_solves_its_defining_equation(successes, n):
    assert wilson_interval(successes, n) == pytest.approx(wilson_by_root_finding(successes, n), abs=1e-9)


def test_wilson_interval_without_data_is_everything():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def two_candidate_rankings(results: str) -> list[RankingRecord]:
    """One ranking per letter: W = version 1's candidate 11 above 21, L = below, T = tied."""
    tiers = {"W": [[11], [21]], "L": [[21], [11]], "T": [[11, 21]]}
    return [rec(i, 1, tiers[x]) for i, x in enumerate(results)]


def test_win_rate_counts_ties_as_half_and_is_symmetric():
    outcomes = version_outcomes(two_candidate_rankings("WWWLTT"), VERSION_OF)
    # 3 wins + 2 ties / 2 = 4 of 6.
    a = win_rate(outcomes, 1, 2)
    assert (a.wins, a.losses, a.ties, a.comparisons, a.rankings) == (3, 1, 2, 6, 6)
    assert a.rate == pytest.approx(4 / 6)
    assert (a.low, a.high) == pytest.approx(wilson_by_root_finding(4, 6), abs=1e-9)
    # From version 2's side: 1 win, 3 losses, rate 2/6, and the interval mirrored around 1/2.
    b = win_rate(outcomes, 2, 1)
    assert (b.wins, b.losses, b.ties, b.rate) == (1, 3, 2, pytest.approx(2 / 6))
    assert (b.low, b.high) == pytest.approx((1 - a.high, 1 - a.low))


def test_win_rate_without_meetings_is_unknown():
    r = win_rate([], 1, 2)
    assert math.isnan(r.rate) and (r.low, r.high, r.comparisons) == (0.0, 1.0, 0)


def test_win_rates_cover_every_pair_that_met():
    outcomes = version_outcomes([rec(1, 1, MIXED)], VERSION_OF)
    # From the fixture above: (1,2) lost twice, (1,3) one tie and one loss, (2,3) one win.
    assert [(w.version_a, w.version_b, w.comparisons, w.rate) for w in win_rates(outcomes)] == [
        (1, 2, 2, 0.0),
        (1, 3, 2, 0.25),
        (2, 3, 1, 1.0),
    ]


def test_bootstrap_win_rate_contains_estimate_and_narrows_with_more_data():
    few = version_outcomes(two_candidate_rankings("WWWLTTWL"), VERSION_OF)
    many = version_outcomes(two_candidate_rankings("WWWLTTWL" * 10), VERSION_OF)
    small = win_rate(few, 1, 2, method="bootstrap", rounds=500, seed=3)
    large = win_rate(many, 1, 2, method="bootstrap", rounds=500, seed=3)
    # Same proportions: (4 + 1) / 8 = 0.625 both times.
    assert small.rate == large.rate == pytest.approx(0.625)
    for r in (small, large):
        assert r.low <= r.rate <= r.high
    assert large.high - large.low < small.high - small.low
    assert win_rate(few, 1, 2, method="bootstrap", rounds=500, seed=3) == small  # seeded: reproducible


# ---------------------------------------------------------------- Bradley-Terry


# Strengths 1 : 2 : 4 for versions 1, 2, 3 and counts exactly proportional to what they predict:
# P(2 beats 1) = 2/3 (20 of 30), P(3 beats 2) = 2/3 (20 of 30), P(3 beats 1) = 4/5 (20 of 25).
# Those strengths satisfy the likelihood equations exactly, so the MLE is log(1, 2, 4) up to a shift and
# neighbours are 400 * log10(2) = 120.41 points apart; centred on 1000: 879.59, 1000, 1120.41.
PROPORTIONAL = [
    (1, 2, 1.0, 10),
    (1, 2, 0.0, 20),
    (2, 3, 1.0, 10),
    (2, 3, 0.0, 20),
    (1, 3, 1.0, 5),
    (1, 3, 0.0, 20),
]


def ratings_by_version(rows):
    return {r.version: r for r in rows}


def test_bradley_terry_recovers_known_strength_ratios():
    rows = bradley_terry(outcome_rows(PROPORTIONAL), prior=1e-9, rounds=0)
    assert [r.version for r in rows] == [3, 2, 1]  # best first
    got = ratings_by_version(rows)
    step = 400 * math.log10(2)
    assert got[1].rating == pytest.approx(1000 - step, abs=1e-3)
    assert got[2].rating == pytest.approx(1000, abs=1e-3)
    assert got[3].rating == pytest.approx(1000 + step, abs=1e-3)
    assert [got[v].comparisons for v in (1, 2, 3)] == [55, 60, 55]


def hunter_mm(
    n_versions: int, table: list[tuple[int, int, float, int]], iterations: int = 5000
) -> np.ndarray:
    """Hunter (2004) MM iterations for the plain BT MLE: p_i <- W_i / sum_j N_ij / (p_i + p_j)."""
    wins = np.zeros(n_versions)
    meetings = np.zeros((n_versions, n_versions))
    for a, b, score, count in table:
        wins[a - 1] += score * count
        wins[b - 1] += (1 - score) * count
        meetings[a - 1, b - 1] += count
        meetings[b - 1, a - 1] += count
    p = np.ones(n_versions)
    for _ in range(iterations):
        p = wins / (meetings / (p[:, None] + p[None, :])).sum(axis=1)
        p /= np.exp(np.log(p).mean())
    return np.log(p)


def test_bradley_terry_agrees_with_hunters_mm_algorithm_on_uneven_data_with_ties():
    table = [
        (1, 2, 1.0, 7), (1, 2, 0.0, 3), (1, 2, 0.5, 4), (2, 3, 1.0, 2), (2, 3, 0.0, 9), (1, 3, 0.5, 6),
        (1, 3, 0.0, 5), (3, 4, 1.0, 4), (3, 4, 0.0, 1), (2, 4, 0.5, 3), (2, 4, 1.0, 1), (1, 4, 0.0, 2),
    ]  # fmt: skip
    theta = hunter_mm(4, table)
    expected = BASE_RATING + ELO * (theta - theta.mean())
    got = ratings_by_version(bradley_terry(outcome_rows(table), prior=1e-9, rounds=0))
    assert [got[v].rating for v in (1, 2, 3, 4)] == pytest.approx(list(expected), abs=1e-3)


def test_a_tie_is_half_a_win():
    # Two ties and one win for version 1 are 2 of 3 points: the same as two wins and one loss, so the
    # odds are 2:1 and the gap 400 * log10(2) either way.
    with_ties = ratings_by_version(
        bradley_terry(outcome_rows([(1, 2, 0.5, 2), (1, 2, 1.0, 1)]), prior=1e-9, rounds=0)
    )
    plain = ratings_by_version(
        bradley_terry(outcome_rows([(1, 2, 1.0, 2), (1, 2, 0.0, 1)]), prior=1e-9, rounds=0)
    )
    for ratings in (with_ties, plain):
        assert ratings[1].rating - ratings[2].rating == pytest.approx(400 * math.log10(2), abs=1e-3)


def test_an_undefeated_version_gets_a_finite_rating_set_by_the_prior():
    rows = ratings_by_version(bradley_terry(outcome_rows([(1, 2, 1.0, 10)]), rounds=0))
    # Objective: -10 log sigmoid(t1 - t2) + prior/2 (t1^2 + t2^2). By symmetry t1 = -t2 = d/2 and the
    # stationarity condition is 10 * sigmoid(-d) = prior * d / 2; solve it independently.
    d = brentq(lambda d: 10 / (1 + math.exp(d)) - DEFAULT_PRIOR * d / 2, 0, 50)
    assert rows[1].rating - rows[2].rating == pytest.approx(ELO * d, abs=1e-3)
    assert 500 < ELO * d < 1000  # large, as ten straight wins deserve, yet finite


def test_versions_that_never_met_are_flagged_as_separate_components():
    rows = ratings_by_version(
        bradley_terry(
            outcome_rows([(1, 2, 1.0, 3), (1, 2, 0.0, 1), (3, 4, 1.0, 2), (3, 4, 0.0, 2)]), rounds=0
        )
    )
    assert rows[1].component == rows[2].component != rows[3].component == rows[4].component
    # The prior centres each component on its own: both pairs average 1000, and 3 vs 4 (2-2) is level.
    assert (rows[1].rating + rows[2].rating) / 2 == pytest.approx(1000)
    assert rows[3].rating == pytest.approx(1000) and rows[4].rating == pytest.approx(1000)


def test_anchor_pins_one_version_without_changing_gaps():
    centred = ratings_by_version(bradley_terry(outcome_rows(PROPORTIONAL), rounds=0))
    anchored = ratings_by_version(bradley_terry(outcome_rows(PROPORTIONAL), anchor=1, rounds=50))
    assert anchored[1].rating == anchored[1].low == anchored[1].high == 1000
    for v in (2, 3):
        assert anchored[v].rating - 1000 == pytest.approx(centred[v].rating - centred[1].rating)
    with pytest.raises(ValueError, match="anchor"):
        bradley_terry(outcome_rows(PROPORTIONAL), anchor=9)


@pytest.mark.parametrize("resample", ["ranking", "pair"])
def test_bootstrap_intervals_contain_the_estimate_and_narrow_with_more_data(resample):
    small = bradley_terry(outcome_rows(PROPORTIONAL), rounds=300, seed=1, resample=resample)
    large = bradley_terry(
        outcome_rows([(a, b, s, 10 * n) for a, b, s, n in PROPORTIONAL]),
        rounds=300,
        seed=1,
        resample=resample,
    )
    for row in small + large:
        assert row.low <= row.rating <= row.high
    small_by, large_by = ratings_by_version(small), ratings_by_version(large)
    for v in (1, 2, 3):
        assert large_by[v].high - large_by[v].low < small_by[v].high - small_by[v].low
    assert bradley_terry(outcome_rows(PROPORTIONAL), rounds=300, seed=1, resample=resample) == small


def test_ranking_bootstrap_keeps_pairs_of_one_ranking_together():
    # Every ranking of 4 candidates (2 per version) yields 4 outcomes that all go the same way. Resampling
    # rankings sees 20 independent units, resampling pairs wrongly sees 80, so its interval is narrower.
    version_of = {1: 1, 2: 1, 3: 2, 4: 2}
    rankings = [rec(i, 1, [[1, 2], [3, 4]] if i % 4 else [[3, 4], [1, 2]]) for i in range(20)]
    outcomes = version_outcomes(rankings, version_of)
    assert len(outcomes) == 80
    by_ranking = ratings_by_version(bradley_terry(outcomes, rounds=400, seed=2, resample="ranking"))
    by_pair = ratings_by_version(bradley_terry(outcomes, rounds=400, seed=2, resample="pair"))
    assert by_pair[1].high - by_pair[1].low < by_ranking[1].high - by_ranking[1].low


def test_no_outcomes_no_ratings():
    assert bradley_terry([]) == []


# ---------------------------------------------------------------- position and length bias

BIAS_RANKINGS = [
    rec(1, 1, [[1], [2], [3]], shown=[1, 2, 3]),  # first shown (1) is best: 1
    rec(2, 1, [[1], [2], [3]], shown=[2, 1, 3]),  # first shown (2) is second: 0
    rec(3, 1, [[1, 3]], shown=[3, 1]),  # first shown shares the top tier of 2: 1/2
    rec(4, 1, [[1], [2]], shown=[1, 2]),  # 1
    rec(5, 1, [[1], [2]]),  # no display order (imported): not counted
]


def test_first_shown_win_rate_against_chance():
    result = first_shown_win_rate(BIAS_RANKINGS)
    # (1 + 0 + 0.5 + 1) / 4 = 0.625 vs chance (1/3 + 1/3 + 1/2 + 1/2) / 4 = 5/12.
    assert (result.n, result.estimate, result.expected) == (4, pytest.approx(0.625), pytest.approx(5 / 12))
    assert (result.low, result.high) == pytest.approx(wilson_by_root_finding(2.5, 4), abs=1e-9)


def test_first_shown_credit_averages_to_one_over_k_without_bias():
    # Brute force: one judgement shown in all 24 orders; an unbiased annotator gives the same tiers every
    # time, so the rate must equal the expected 1/K exactly, whatever the tie in the top tier.
    tiers = [[1, 2], [3], [4]]
    rankings = [rec(i, 1, tiers, shown=order) for i, order in enumerate(permutations([1, 2, 3, 4]))]
    result = first_shown_win_rate(rankings)
    assert result.estimate == pytest.approx(0.25) and result.expected == pytest.approx(0.25)


def test_earlier_shown_preference_over_strict_pairs():
    # Ranking 1: all three pairs won by the earlier shown. Ranking 2 (shown 2,1,3): 1>2 won by the later
    # one, 1>3 and 2>3 by the earlier. Ranking 3 is a tie: no pair. Ranking 4: 1>2, earlier. -> 6 of 7.
    result = earlier_shown_preference(BIAS_RANKINGS)
    assert (result.n, result.estimate, result.expected) == (7, pytest.approx(6 / 7), 0.5)


def test_length_bias_ignores_ties_and_equal_lengths():
    lengths = {1: 100, 2: 50, 3: 50}
    rankings = [rec(1, 1, [[1], [2], [3]]), rec(2, 1, [[2], [1, 3]])]
    # Ranking 1: 1>2 longer wins, 1>3 longer wins, 2>3 equal lengths (out).
    # Ranking 2: 2>1 shorter wins, 2>3 equal lengths (out), 1=3 tie (out). -> 2 of 3.
    result = length_bias(rankings, lengths)
    assert (result.n, result.estimate, result.expected) == (3, pytest.approx(2 / 3), 0.5)
    assert (result.low, result.high) == pytest.approx(wilson_by_root_finding(2, 3), abs=1e-9)
    with pytest.raises(ValueError, match=r"\[3\]"):
        length_bias(rankings, {1: 1, 2: 2})


def test_bias_bootstrap_interval_narrows_with_more_rankings():
    lengths = {1: 100, 2: 50, 3: 10}
    base = [[[1], [2], [3]], [[3], [2], [1]], [[1], [3], [2]], [[2], [1], [3]]]
    few = [rec(i, 1, t) for i, t in enumerate(base)]
    many = [rec(i, 1, t) for i, t in enumerate(base * 10)]
    small = length_bias(few, lengths, method="bootstrap", rounds=500, seed=5)
    large = length_bias(many, lengths, method="bootstrap", rounds=500, seed=5)
    assert small.estimate == pytest.approx(large.estimate)
    for r in (small, large):
        assert r.low <= r.estimate <= r.high
    assert large.high - large.low < small.high - small.low
