"""The models page's learning curve: per trained policy version, oldest first, the oracle-free signals of
the loop: its round's reward model accuracy (held-out at training, and on fresh rankings it never saw) and
the blind human win-rate against its parent and against the base model, with 95% intervals.

A line chart shows the estimates version by version; an interval chart shows each with its interval (the
line chart cannot draw intervals). Both are drawn by templates/admin/_macros.html from charts.py geometry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.admin import charts
from app.admin.common import rounded
from app.orm import ModelVersion
from app.quality.reward_accuracy import Accuracy
from app.quality.version_stats import HumanWinRate


@dataclass(frozen=True)
class CurvePoint:
    """One policy version's signals."""

    version: ModelVersion
    heldout: Accuracy | None  # its round's reward model, at training time
    fresh: Accuracy | None  # the same reward model on rankings it never saw
    vs_parent: HumanWinRate | None
    vs_base: HumanWinRate | None  # None when it never met the base model in a set


@dataclass(frozen=True)
class LearningCurve:
    points: list[CurvePoint]
    line: charts.LineChart | None  # None with fewer than one point
    intervals: charts.IntervalChart | None


_SIGNALS = (
    ("RM held-out accuracy", "heldout"),
    ("RM fresh accuracy", "fresh"),
    ("human win-rate vs parent", "vs_parent"),
    ("human win-rate vs base", "vs_base"),
)


def _estimate(value: Accuracy | HumanWinRate | None) -> tuple[float, float, float]:
    if value is None:
        return math.nan, math.nan, math.nan
    rate = value.accuracy if isinstance(value, Accuracy) else value.rate
    if isinstance(value, HumanWinRate) and value.comparisons == 0:
        return math.nan, math.nan, math.nan
    return rate, value.low, value.high


def learning_curve(points: list[CurvePoint]) -> LearningCurve:
    """The charts of the points, in the order given (oldest version first)."""
    if not points:
        return LearningCurve([], None, None)
    series: dict[str, Sequence[tuple[float, float]]] = {
        label: [(float(i + 1), _estimate(getattr(p, attr))[0]) for i, p in enumerate(points)]
        for label, attr in _SIGNALS
    }
    line = charts.line_chart(
        series,
        title="Learning curve by policy version",
        x_label="policy version (oldest = 1)",
        y_label="rate",
    )
    rows = []
    for p in points:
        for label, attr in _SIGNALS:
            rows.append((f"{p.version.name}: {label}", *_estimate(getattr(p, attr))))
    intervals = charts.interval_chart(
        rows,
        title="Each signal with its 95% interval",
        reference=0.5,
        reference_label="50%: no better than the other version (win-rates) or chance (accuracy)",
        value_format="{:.1%}",
        bounds=(0.0, 1.0),
    )
    return LearningCurve(points, line, intervals)


def curve_table(curve: LearningCurve) -> charts.Table:
    """The learning curve's data: one row per policy version and signal."""
    rows = []
    for i, p in enumerate(curve.points):
        for label, attr in _SIGNALS:
            est, low, high = _estimate(getattr(p, attr))
            rows.append(
                (i + 1, p.version.id, p.version.name, label, rounded(est), rounded(low), rounded(high))
            )
    return charts.Table(
        "learning-curve", ("step", "version_id", "name", "signal", "estimate", "ci_low", "ci_high"), rows
    )
