"""Chart geometry for server-side SVG, and the data behind every chart as CSV or JSON.

The functions here only compute coordinates and plain-text labels; templates/admin/_macros.html draws the
SVG with Jinja's autoescaping, so no label (prompt set names, version names) ever reaches the page raw.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import Response

from app.errors import NotFound

FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Table:
    """A chart's data: named columns and rows of plain values (what the CSV/JSON download holds)."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: missing statistics become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_response(table: Table, fmt: str) -> Response:
    """The table as a CSV download or a JSON document ({"columns": [...], "rows": [{...}]})."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow(["" if _plain(v) is None else _csv_safe(v) for v in row])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{table.name}.csv"'},
        )
    if fmt == "json":
        body = {
            "name": table.name,
            "columns": list(table.columns),
            "rows": [{c: _plain(v) for c, v in zip(table.columns, row, strict=True)} for row in table.rows],
        }
        return Response(json.dumps(body, default=str), media_type="application/json")
    raise NotFound(f"unknown data format {fmt!r}; use csv or json")


def _csv_safe(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# --- geometry -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    pos: float  # pixel coordinate along the axis
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: int
    bottom: int  # y pixel of the x axis
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    points: str  # "x,y x,y ..." for <polyline points>
    last_x: float
    last_y: float
    colour: str


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    title: str
    x_label: str
    y_label: str


@dataclass(frozen=True)
class Interval:
    label: str
    y: float
    x_low: float
    x_high: float
    x_mid: float
    text: str
    highlight: bool = False
    x_expected: float | None = None  # where the row's value would be without an effect (chance)


@dataclass(frozen=True)
class IntervalChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    rows: list[Interval]
    x_ticks: list[Tick]
    reference: float | None  # x pixel of a reference line (chance, base rating)
    reference_label: str
    title: str
    row_height: int = 26


@dataclass
class _Scale:
    lo: float
    hi: float
    start: float
    end: float
    ticks: list[float] = field(default_factory=list)

    def __call__(self, value: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.start + (value - self.lo) / span * (self.end - self.start)


PALETTE = ("#3056d3", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#5c940d", "#e67700")


def nice_ticks(
    lo: float, hi: float, count: int = 5, integer: bool = False
) -> tuple[float, float, list[float]]:
    """Round axis bounds and evenly spaced round tick values covering [lo, hi] (whole steps if `integer`)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    start = round(math.floor(lo / step) * step, 10)
    end = round(math.ceil(hi / step) * step, 10)
    ticks = []
    value = start
    while value <= end + step / 1000:
        ticks.append(round(value, 10))
        value += step
    return start, end, ticks


def fmt_number(value: float) -> str:
    """Short tick label: 12k, 1500, 3.5, 0.25."""
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    width: int = 1100,
    height: int = 220,
    label_every: int = 1,
) -> BarChart:
    """Vertical bars (e.g. rankings per day); every `label_every`-th x label is printed."""
    left, top, bottom_pad = 44, 10, 24
    bottom = height - bottom_pad
    lo, hi, ticks = nice_ticks(0.0, max([*values, 1.0]), 4)
    y = _Scale(lo, hi, bottom, top)
    n = max(1, len(values))
    slot = (width - left - 8) / n
    bars = []
    x_ticks = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + i * slot
        bar_top = y(value)
        bars.append(
            Bar(
                x=round(x + slot * 0.12, 1),
                y=round(bar_top, 1),
                width=round(max(1.0, slot * 0.76), 1),
                height=round(bottom - bar_top, 1),
                label=label,
                value=fmt_number(value),
            )
        )
        if i % max(1, label_every) == 0:
            x_ticks.append(Tick(round(x + slot / 2, 1), label))
    return BarChart(
        width=width,
        height=height,
        left=left,
        bottom=bottom,
        bars=bars,
        y_ticks=[Tick(round(y(t), 1), fmt_number(t)) for t in ticks],
        x_ticks=x_ticks,
        title=title,
    )


# Tick values for a duration axis, in seconds: a tick is drawn at each one that fits without crowding.
DURATION_TICKS = (
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    20,
    30,
    60,
    120,
    300,
    600,
    1200,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
)


def fmt_duration(seconds: float) -> str:
    """Axis label for a duration: 0.5 s, 30 s, 2 min, 1 h."""
    if seconds < 1:
        return f"{seconds:g} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def log_histogram(
    edges: Sequence[float],
    counts: Sequence[int],
    *,
    title: str,
    width: int = 560,
    height: int = 220,
    min_tick_gap: float = 46.0,
) -> BarChart:
    """A histogram of positive values on a log x axis: bar i spans [edges[i], edges[i+1]), drawn with a
    width proportional to its log range (equal for doubling bins), and every axis label drawn at its value.

    Equal-width bars over unequal ranges (5 s next to 20 min) misdraw a distribution; on a log axis a bar's
    width matches the range it counts, and the labels are ticks at round durations, not bin names.
    """
    if len(edges) != len(counts) + 1 or len(counts) == 0 or edges[0] <= 0:
        raise ValueError("a log histogram needs positive edges, one more than counts")
    left, top, bottom_pad, right = 44, 10, 24, width - 8
    bottom = height - bottom_pad
    lo, hi, ticks = nice_ticks(0.0, max([*map(float, counts), 1.0]), 4, integer=True)
    y = _Scale(lo, hi, bottom, top)
    log_lo, log_hi = math.log(edges[0]), math.log(edges[-1])

    def x(value: float) -> float:
        return left + (math.log(value) - log_lo) / (log_hi - log_lo) * (right - left)

    bars = []
    for a, b, n in zip(edges[:-1], edges[1:], counts, strict=True):
        x0, x1, bar_top = x(a), x(b), y(float(n))
        bars.append(
            Bar(
                x=round(x0 + 0.5, 1),
                y=round(bar_top, 1),
                width=round(max(1.0, x1 - x0 - 1.0), 1),
                height=round(bottom - bar_top, 1),
                label=f"{fmt_duration(a)} to {fmt_duration(b)}",
                value=fmt_number(float(n)),
            )
        )
    x_ticks: list[Tick] = []
    for value in DURATION_TICKS:
        if not edges[0] <= value <= edges[-1]:
            continue
        pos = x(value)
        if x_ticks and pos - x_ticks[-1].pos < min_tick_gap:
            continue
        x_ticks.append(Tick(round(pos, 1), fmt_duration(value)))
    return BarChart(
        width=width,
        height=height,
        left=left,
        bottom=bottom,
        bars=bars,
        y_ticks=[Tick(round(y(t), 1), fmt_number(t)) for t in ticks],
        x_ticks=x_ticks,
        title=title,
    )


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 720,
    height: int = 240,
) -> LineChart:
    """One polyline per named series on shared axes."""
    left, right, top, bottom = 52, width - 12, 12, height - 34
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points if math.isfinite(y)]
    whole = all(float(x).is_integer() for x in xs)  # steps: no tick at step 2.5
    x_lo, x_hi, x_ticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0), 6, integer=whole)
    y_lo, y_hi, y_ticks = nice_ticks(min(ys, default=0.0), max(ys, default=1.0), 4)
    sx = _Scale(x_lo, x_hi, left, right)
    sy = _Scale(y_lo, y_hi, bottom, top)
    drawn = []
    for i, (name, points) in enumerate(series.items()):
        finite = [(x, y) for x, y in points if math.isfinite(y)]
        if not finite:
            continue
        coords = [(round(sx(x), 1), round(sy(y), 1)) for x, y in finite]
        drawn.append(
            Series(
                name=name,
                points=" ".join(f"{x},{y}" for x, y in coords),
                last_x=coords[-1][0],
                last_y=coords[-1][1],
                colour=PALETTE[i % len(PALETTE)],
            )
        )
    return LineChart(
        width=width,
        height=height,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        series=drawn,
        x_ticks=[Tick(round(sx(t), 1), fmt_number(t)) for t in x_ticks],
        y_ticks=[Tick(round(sy(t), 1), fmt_number(t)) for t in y_ticks],
        title=title,
        x_label=x_label,
        y_label=y_label,
    )


def interval_chart(
    rows: Sequence[tuple[str, float, float, float]],
    *,
    title: str,
    reference: float | None = None,
    reference_label: str = "",
    highlight: Sequence[str] = (),
    value_format: str = "{:.0f}",
    width: int = 1100,
    bounds: tuple[float, float] | None = None,
    expected: Sequence[float | None] = (),
) -> IntervalChart:
    """Horizontal confidence-interval bars: (label, estimate, low, high) per row, top to bottom."""
    # Room for the longest label at ~7 px per character of the 12 px font.
    longest = max((len(label) for label, *_ in rows), default=10)
    left, right, top, row_h = min(400, max(120, 7 * min(longest, 40) + 20)), width - 80, 8, 26
    height = top + row_h * max(1, len(rows)) + 26
    bottom = height - 22
    finite = [v for _, est, lo, hi in rows for v in (est, lo, hi) if math.isfinite(v)]
    if reference is not None:
        finite.append(reference)
    lo_v, hi_v = bounds if bounds is not None else (min(finite, default=0.0), max(finite, default=1.0))
    x_lo, x_hi, ticks = nice_ticks(lo_v, hi_v, 5)
    sx = _Scale(x_lo, x_hi, left, right)
    drawn = []
    for i, (label, est, lo, hi) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        ok = all(math.isfinite(v) for v in (est, lo, hi))
        chance = expected[i] if i < len(expected) else None
        drawn.append(
            Interval(
                label=label,
                y=round(y, 1),
                x_low=round(sx(lo), 1) if ok else left,
                x_high=round(sx(hi), 1) if ok else left,
                x_mid=round(sx(est), 1) if ok else left,
                text=(value_format.format(est) if ok else "n/a"),
                highlight=label in highlight,
                x_expected=round(sx(chance), 1) if chance is not None else None,
            )
        )
    return IntervalChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        rows=drawn,
        x_ticks=[Tick(round(sx(t), 1), fmt_number(t)) for t in ticks],
        reference=round(sx(reference), 1) if reference is not None else None,
        reference_label=reference_label,
        title=title,
        row_height=row_h,
    )
