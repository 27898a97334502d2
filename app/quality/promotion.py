"""The promotion gate's statistics: is a policy's blind human win-rate over the active policy confidently
above 50%, and how many more rankings would make it so at the rate observed so far.

The gate passes when at least `min_rankings` rankings compared the two versions and the Wilson lower bound
(CONFIDENCE) of the win-rate is above 0.5. For an observed rate p over n comparisons that lower bound is
above 0.5 exactly when p > 0.5 and n > z^2 / (4 (p - 0.5)^2) (0.5 lies outside the Wilson interval when
|p - 0.5| > z sqrt(0.25 / n)), which gives the rankings still needed in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.quality.intervals import CONFIDENCE, z_value
from app.quality.version_stats import HumanWinRate


@dataclass(frozen=True)
class GateCheck:
    """The gate's verdict on one policy against the active one."""

    passed: bool
    reason: str  # one sentence for the page and the log
    # More rankings needed at the observed rate (0 when passed); None when the rate is unknown or at most
    # 50% (the gate cannot pass at the current rate).
    more_rankings: int | None
    hacking: bool = False  # refused by the reward-hacking alarm (app.quality.reward_signals)


def comparisons_needed(rate: float, confidence: float = CONFIDENCE) -> int | None:
    """The fewest comparisons at which `rate` has a Wilson lower bound above 0.5; None if rate <= 0.5."""
    if not rate > 0.5:
        return None
    z = z_value(confidence)
    return math.floor(z * z / (4 * (rate - 0.5) ** 2)) + 1


def gate_check(human: HumanWinRate | None, min_rankings: int, confidence: float = CONFIDENCE) -> GateCheck:
    """Whether the human win-rate passes the gate (min_rankings rankings, lower bound above 0.5)."""
    rankings = human.rankings if human is not None else 0
    comparisons = human.comparisons if human is not None else 0
    if human is None or comparisons == 0:
        return GateCheck(False, "no blind rankings against the active policy yet", None)
    low_ok = human.low > 0.5
    if rankings >= min_rankings and low_ok:
        return GateCheck(
            True,
            f"people prefer it: {human.rate:.0%} win-rate, 95% lower bound {human.low:.1%}, "
            f"{rankings} rankings",
            0,
        )
    needed = comparisons_needed(human.rate, confidence)
    if needed is None:
        return GateCheck(
            False, f"cannot pass at the current rate ({human.rate:.0%} win-rate, {rankings} rankings)", None
        )
    # Comparisons come a few per ranking (every new/active pair in a set): scale by the observed ratio.
    per_ranking = comparisons / rankings
    target = max(min_rankings, math.ceil(needed / per_ranking - 1e-9))
    if low_ok:  # the bound is met already; only the minimum count is missing
        target = min_rankings
    more = max(1, target - rankings)
    return GateCheck(
        False,
        f"needs about {more} more rankings at the current {human.rate:.0%} win-rate "
        f"(95% lower bound {human.low:.1%} over {rankings} rankings; gate: above 50% with {min_rankings})",
        more,
    )
