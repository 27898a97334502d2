"""Chart geometry and chart data downloads."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from app.admin import charts
from app.errors import NotFound


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (0.31, 0.55), (720, 1150), (0, 1733), (-0.2, 0.9), (5, 5)])
def test_nice_ticks_cover_the_range_with_even_steps(lo, hi):
    start, end, ticks = charts.nice_ticks(lo, hi)
    assert start <= lo and end >= hi and ticks[0] == start and ticks[-1] == pytest.approx(end)
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and 2 <= len(ticks) <= 12


def test_whole_steps_get_whole_ticks():
    _, _, ticks = charts.nice_ticks(1, 3, 6, integer=True)
    assert ticks == [1, 2, 3]


def test_bar_heights_are_proportional_and_labels_thinned():
    c = charts.bar_chart(["a", "b", "c", "d"], [0, 50, 100, 25], title="t", label_every=2)
    heights = [b.height for b in c.bars]
    assert heights[0] == 0 and heights[2] == pytest.approx(2 * heights[1]) == pytest.approx(4 * heights[3])
    assert [t.label for t in c.x_ticks] == ["a", "c"]
    assert all(b.y + b.height == pytest.approx(c.bottom) for b in c.bars)


def test_line_chart_maps_points_inside_the_plot():
    c = charts.line_chart(
        {"reward": [(1, 0.7), (2, 0.6), (3, float("nan")), (4, 0.5)]}, title="t", x_label="x", y_label="y"
    )
    (series,) = c.series
    points = [tuple(map(float, p.split(","))) for p in series.points.split()]
    assert len(points) == 3  # NaN losses are skipped
    assert all(c.left <= x <= c.right and c.top <= y <= c.bottom for x, y in points)
    assert points[0][1] < points[-1][1]  # SVG y grows downwards: a falling loss ends lower on the chart


def test_interval_chart_keeps_rows_in_order_and_marks_expectations():
    c = charts.interval_chart(
        [("best", 1200, 1150, 1250), ("worst", 800, 760, 840), ("unknown", math.nan, math.nan, math.nan)],
        title="t",
        reference=1000,
        expected=[None, 900, None],
        highlight=["best"],
    )
    best, worst, unknown = c.rows
    assert best.y < worst.y < unknown.y and best.highlight and not worst.highlight
    assert best.x_low < best.x_mid < best.x_high and worst.x_high < c.reference < best.x_low
    assert worst.x_expected is not None and best.x_expected is None
    assert unknown.text == "n/a"


def test_table_downloads_guard_spreadsheets_and_nan():
    table = charts.Table("t", ("name", "value"), [("=HYPERLINK(1)", 1.5), ("-1", math.nan), ("plain", -2.0)])
    body = charts.table_response(table, "csv").body.decode()
    assert body.splitlines() == ["name,value", "'=HYPERLINK(1),1.5", "'-1,", "plain,-2.0"]
    data = json.loads(charts.table_response(table, "json").body)
    assert data["rows"][1] == {"name": "-1", "value": None}
    with pytest.raises(NotFound):
        charts.table_response(table, "xml")
