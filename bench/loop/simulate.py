"""Simulated annotators' maths: ties, Plackett-Luce orders, temperature calibration, intervals. Pure Python.

Model of one annotator ranking K candidates with oracle scores x_1..x_K:

1. Ties. Candidates whose scores are near-equal are one tier: two scores a, b are near-equal when
   |a - b| <= max(TIE_ABS, TIE_REL * max(|a|, |b|)) (defaults 1e-9 and 1e-6: only scores equal up to float
   noise tie; an oracle with coarse, integer-like scores produces real ties). Groups are built by walking the
   sorted scores and chaining near-equal neighbours, so the same candidates always tie, for every annotator.
2. Order. The groups are ordered by a Plackett-Luce draw with log-strength score / T (T = temperature),
   sampled exactly with the Gumbel trick: sort by score / T + Gumbel noise. A group's score is its mean.
3. Agreement. For PL, group i lands above group j with probability p = sigmoid((x_i - x_j) / T) whatever the
   other candidates are, so two independent annotators order that pair the same way with probability
   p^2 + (1 - p)^2. The expected agreement of a set of candidate pairs is the mean of that over the pairs
   that are not tied (tied pairs have nothing to agree about; they are reported apart). It falls
   monotonically from 1 (T -> 0) to 1/2 (T -> inf), so T is found by bisection on log T.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

TIE_ABS = 1e-9
TIE_REL = 1e-6
DEFAULT_AGREEMENT = 0.73  # InstructGPT (Ouyang et al. 2022): labellers agreed on 72.6 +- 1.5% of pairs


def near_equal(a: float, b: float, abs_eps: float = TIE_ABS, rel_eps: float = TIE_REL) -> bool:
    return abs(a - b) <= max(abs_eps, rel_eps * max(abs(a), abs(b)))


def tie_groups(
    scores: Sequence[float], abs_eps: float = TIE_ABS, rel_eps: float = TIE_REL
) -> list[list[int]]:
    """Indexes of the scores grouped into ties, best group first (within a group: input order)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and near_equal(scores[groups[-1][-1]], scores[i], abs_eps, rel_eps):
            groups[-1].append(i)
        else:
            groups.append([i])
    return [sorted(g) for g in groups]


def gumbel(rng: random.Random) -> float:
    u = rng.random()
    while u <= 0.0:
        u = rng.random()
    return -math.log(-math.log(u))


def pl_tiers(
    scores: Sequence[float],
    temperature: float,
    rng: random.Random,
    abs_eps: float = TIE_ABS,
    rel_eps: float = TIE_REL,
) -> list[list[int]]:
    """One annotator's ranking: tiers of indexes (best first), PL over the tie groups at this temperature."""
    groups = tie_groups(scores, abs_eps, rel_eps)
    means = [sum(scores[i] for i in g) / len(g) for g in groups]
    keys = [m / temperature + gumbel(rng) for m in means]
    return [groups[j] for j in sorted(range(len(groups)), key=lambda j: -keys[j])]


# How a simulated annotator ranks: "oracle" draws the PL order above; "random" ignores the candidates (a
# uniformly random order, no ties); "reverse" draws the PL order and submits it upside down.
BEHAVIOURS = ("oracle", "random", "reverse")


def annotator_tiers(
    behaviour: str,
    scores: Sequence[float],
    temperature: float,
    rng: random.Random,
    abs_eps: float = TIE_ABS,
    rel_eps: float = TIE_REL,
) -> list[list[int]]:
    """One ranking (tiers of indexes, best first) by an annotator of this behaviour."""
    if behaviour == "random":
        order = list(range(len(scores)))
        rng.shuffle(order)
        return [[i] for i in order]
    tiers = pl_tiers(scores, temperature, rng, abs_eps, rel_eps)
    if behaviour == "reverse":
        return tiers[::-1]
    if behaviour != "oracle":
        raise ValueError(f"unknown annotator behaviour {behaviour!r}; one of {', '.join(BEHAVIOURS)}")
    return tiers


def share_count(n: int, share: float) -> int:
    """How many of n annotators a share means: rounded, at least one for any share above 0."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a share is from 0 to 1, got {share}")
    return max(1, round(n * share)) if share > 0 else 0


def behaviours(n: int, random_share: float = 0.0, reverse_share: float = 0.0) -> list[str]:
    """Each of n annotators' behaviour: the unreliable ones last (random, then reverse); at least one
    annotator follows the oracle."""
    n_random, n_reverse = share_count(n, random_share), share_count(n, reverse_share)
    if n_random + n_reverse >= n:
        raise ValueError(
            f"{n_random} random and {n_reverse} reverse annotators of {n}: leave at least one reliable"
        )
    return ["oracle"] * (n - n_random - n_reverse) + ["random"] * n_random + ["reverse"] * n_reverse


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def untied_gaps(
    score_sets: Sequence[Sequence[float]], abs_eps: float = TIE_ABS, rel_eps: float = TIE_REL
) -> tuple[list[float], int]:
    """|x_i - x_j| of every within-set pair that is not a tie, and how many pairs were ties."""
    gaps, ties = [], 0
    for scores in score_sets:
        for a in range(len(scores)):
            for b in range(a + 1, len(scores)):
                if near_equal(scores[a], scores[b], abs_eps, rel_eps):
                    ties += 1
                else:
                    gaps.append(abs(scores[a] - scores[b]))
    return gaps, ties


def expected_agreement(gaps: Sequence[float], temperature: float) -> float:
    """Mean over pairs of p^2 + (1-p)^2 with p = sigmoid(gap / T); nan without pairs."""
    if not gaps:
        return math.nan
    total = 0.0
    for gap in gaps:
        p = sigmoid(gap / temperature)
        total += p * p + (1.0 - p) * (1.0 - p)
    return total / len(gaps)


@dataclass(frozen=True)
class Calibration:
    temperature: float
    agreement: float  # expected pairwise agreement at that temperature (untied pairs)
    target: float
    pairs: int  # untied pairs it was computed on
    tied_pairs: int


def calibrate(
    score_sets: Sequence[Sequence[float]],
    target: float = DEFAULT_AGREEMENT,
    abs_eps: float = TIE_ABS,
    rel_eps: float = TIE_REL,
    iterations: int = 200,
) -> Calibration:
    """The temperature at which two annotators agree on `target` of the untied pairs (bisection on log T).

    `target` must lie in (0.5, 1). Without any untied pair the temperature is 1 and the agreement nan.
    """
    if not 0.5 < target < 1.0:
        raise ValueError(f"target agreement must be in (0.5, 1), got {target}")
    gaps, ties = untied_gaps(score_sets, abs_eps, rel_eps)
    if not gaps:
        return Calibration(1.0, math.nan, target, 0, ties)
    # Bracket: at lo every pair agrees (almost surely), at hi it is a coin toss.
    lo = math.log(min(gaps)) - 30.0
    hi = math.log(max(gaps)) + 30.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if expected_agreement(gaps, math.exp(mid)) > target:
            lo = mid  # too much agreement: more noise
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    temperature = math.exp((lo + hi) / 2)
    return Calibration(temperature, expected_agreement(gaps, temperature), target, len(gaps), ties)


def observed_agreement(pairs_of_rankings: Sequence[tuple[list[list[int]], list[list[int]]]]) -> float:
    """Share of candidate pairs, strictly ordered by both rankings, that both order the same way.

    Each item is two rankings (tiers of candidate ids) of the same set by different annotators.
    """
    same = total = 0
    for first, second in pairs_of_rankings:
        r1 = {c: t for t, tier in enumerate(first) for c in tier}
        r2 = {c: t for t, tier in enumerate(second) for c in tier}
        ids = sorted(set(r1) & set(r2))
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                d1 = r1[ids[a]] - r1[ids[b]]
                d2 = r2[ids[a]] - r2[ids[b]]
                if d1 == 0 or d2 == 0:
                    continue
                total += 1
                same += (d1 > 0) == (d2 > 0)
    return same / total if total else math.nan


# --- win-rates ------------------------------------------------------------------------------------------


def wilson_interval(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a proportion (successes may be fractional: a tie counts half)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class WinRate:
    rate: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses


def win_rate(
    new_scores: Sequence[float],
    old_scores: Sequence[float],
    abs_eps: float = TIE_ABS,
    rel_eps: float = TIE_REL,
) -> WinRate:
    """Paired oracle win-rate of new over old: a near-equal pair counts half; 95% Wilson interval."""
    if len(new_scores) != len(old_scores):
        raise ValueError("one old score per new score")
    wins = ties = losses = 0
    for a, b in zip(new_scores, old_scores, strict=True):
        if near_equal(a, b, abs_eps, rel_eps):
            ties += 1
        elif a > b:
            wins += 1
        else:
            losses += 1
    n = wins + ties + losses
    score = wins + ties / 2
    low, high = wilson_interval(score, n)
    return WinRate(score / n if n else math.nan, low, high, wins, ties, losses)
