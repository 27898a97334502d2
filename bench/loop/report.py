"""The benchmark's outputs: a rich table per round, the JSON report, and an SVG plot (no plotting library)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from rich.console import Console
from rich.table import Table

JSON_KEYS = (
    "round",
    "rankings",
    "round_seconds",
    "winrate_vs_base",
    "winrate_vs_base_ci",
    "winrate_vs_parent",
    "reward_accuracy",
    "human_winrate",
)


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ci(pair: Any) -> str:
    if not pair:
        return "-"
    return f"[{pair[0]:.2f}, {pair[1]:.2f}]"


def _with_ci(value: Any, pair: Any) -> str:
    if value is None:
        return "-"
    return f"{_f(value, 2)} {_ci(pair)}"


def rounds_table(rounds: list[dict[str, Any]], oracle: str) -> Table:
    """One row per round; win-rates with their 95% Wilson intervals. "product round" is the round's id in
    the product (GET /rounds/{id}): round 0's generation is the product's first round, so bench round N is
    usually product round N+1. W/T/L: the new policy's wins, ties and losses against the base model, one
    oracle-judged sample per evaluation prompt (ties count half in the win-rate)."""
    table = Table(title=f"loop benchmark, oracle {oracle}")
    for name in (
        "round",
        "product round",
        "rankings",
        "wall s",
        "oracle vs base",
        "W/T/L vs base",
        "oracle vs parent",
        "RM acc",
        "human vs parent",
        "within CI",
    ):
        table.add_column(name, justify="right")
    for r in rounds:
        counts = r.get("winrate_vs_base_counts")
        table.add_row(
            str(r["round"]),
            f"#{r['round_id']}" if r.get("round_id") else "-",
            str(r["rankings"]),
            _f(r["round_seconds"], 0),
            _with_ci(r["winrate_vs_base"], r["winrate_vs_base_ci"]),
            "/".join(str(n) for n in counts) if counts else "-",
            _with_ci(r["winrate_vs_parent"], r.get("winrate_vs_parent_ci")),
            _f(r["reward_accuracy"], 2),
            _with_ci(r["human_winrate"], r.get("human_winrate_ci")),
            {True: "yes", False: "NO", None: "-"}[r.get("human_oracle_overlap")],
        )
    return table


def stages_table(rounds: list[dict[str, Any]]) -> Table:
    """Seconds per stage of every round (from the round's log, see product.stage_seconds)."""
    names = list(dict.fromkeys(k for r in rounds for k in (r.get("stage_seconds") or {})))
    table = Table(title="round wall time by stage, seconds")
    table.add_column("round", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for r in rounds:
        stages = r.get("stage_seconds") or {}
        table.add_row(str(r["round"]), *(_f(stages.get(n), 0) for n in names))
    return table


def print_rounds(console: Console, rounds: list[dict[str, Any]], oracle: str) -> None:
    console.print(rounds_table(rounds, oracle))
    console.print(stages_table(rounds))


def write_json(path: Path, oracle: str, rounds: list[dict[str, Any]]) -> None:
    """Exactly `{"oracle", "rounds": [...]}`; every round carries JSON_KEYS first (extra keys after)."""
    ordered = []
    for r in rounds:
        row = {k: r[k] for k in JSON_KEYS}
        row.update({k: v for k, v in r.items() if k not in JSON_KEYS})
        ordered.append(row)
    data = {"oracle": oracle, "rounds": ordered}
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_svg(path: Path, rounds: list[dict[str, Any]], oracle: str) -> None:
    """Oracle win-rate vs base (and vs parent, and human vs parent) against rankings, 95% error bars."""
    w, h, left, right, top, bottom = 720, 440, 70, 180, 40, 60
    xs = [r["rankings"] for r in rounds] or [0]
    x_max = max(max(xs), 1)

    def px(x: float) -> float:
        return left + (w - left - right) * x / x_max

    def py(y: float) -> float:
        return top + (h - top - bottom) * (1 - y)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2 - 60}" y="22" font-size="14" text-anchor="middle">Win-rate against rankings '
        f"collected (oracle {escape(oracle)})</text>",
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = py(tick)
        dash = ' stroke-dasharray="4 3"' if tick == 0.5 else ""
        parts.append(f'<line x1="{left}" y1="{y}" x2="{w - right}" y2="{y}" stroke="#ccc"{dash}/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{tick:.2f}</text>')
    for r in rounds:
        x = px(r["rankings"])
        parts.append(f'<text x="{x}" y="{h - bottom + 18}" text-anchor="middle">{r["rankings"]}</text>')
    parts.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 18}" text-anchor="middle">rankings used by the '
        "round</text>"
    )
    parts.append(
        f'<text x="18" y="{(top + h - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {(top + h - bottom) / 2})">win-rate</text>'
    )
    series = (
        ("oracle vs base", "winrate_vs_base", "winrate_vs_base_ci", "#1f77b4", 0),
        ("oracle vs parent", "winrate_vs_parent", "winrate_vs_parent_ci", "#2ca02c", 5),
        ("human vs parent", "human_winrate", "human_winrate_ci", "#d62728", -5),
    )
    for i, (label, key, ci_key, colour, shift) in enumerate(series):
        points = [
            (px(r["rankings"]) + shift, r[key], r.get(ci_key)) for r in rounds if r.get(key) is not None
        ]
        if points:
            path_d = " ".join(
                f"{'M' if j == 0 else 'L'}{x:.1f},{py(y):.1f}" for j, (x, y, _) in enumerate(points)
            )
            parts.append(f'<path d="{path_d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, ci in points:
            if ci:
                parts.append(
                    f'<line x1="{x:.1f}" y1="{py(ci[0]):.1f}" x2="{x:.1f}" y2="{py(ci[1]):.1f}" '
                    f'stroke="{colour}"/>'
                )
            parts.append(f'<circle cx="{x:.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}"/>')
        ly = top + 20 + 20 * i
        parts.append(
            f'<line x1="{w - right + 15}" y1="{ly}" x2="{w - right + 35}" y2="{ly}" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        parts.append(f'<text x="{w - right + 40}" y="{ly + 4}">{label}</text>')
    parts.append(
        f'<text x="{w - right + 15}" y="{top + 90}" font-size="10">bars: 95% Wilson intervals</text>'
    )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
