"""The Leaderboard page: every version's Bradley-Terry rating from the blind human rankings, as a chart and
a table (app.quality.version_stats computes the ratings)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin import charts
from app.admin.common import DataFormat, data_response, page_router, project_context
from app.deps import DB, AdminUser, ProjectParam
from app.quality import version_stats
from app.quality.stats import BASE_RATING
from app.training import repository as training_repo
from app.web import render

router = page_router()


@dataclass(frozen=True)
class LeaderRow:
    version: int
    name: str
    kind: str
    status: str
    rating: float
    low: float
    high: float
    comparisons: int
    component: int


@dataclass(frozen=True)
class Leaderboard:
    rows: list[LeaderRow]
    chart: charts.IntervalChart
    rankings: int
    rounds: int
    components: int
    computed_at: dt.datetime


def leaderboard(session: Session, project_id: int | None = None) -> Leaderboard:
    """Every version's Bradley-Terry rating from the blind human rankings (of one project: its policy line),
    with 95% bootstrap intervals."""
    ratings = version_stats.leaderboard_ratings(session, project_id)
    versions = training_repo.model_versions_by_id(session, [r.version for r in ratings.ratings])
    rows = [
        LeaderRow(
            version=r.version,
            name=versions[r.version].name if r.version in versions else f"#{r.version}",
            kind=versions[r.version].kind.value if r.version in versions else "?",
            status=versions[r.version].status.value if r.version in versions else "?",
            rating=r.rating,
            low=r.low,
            high=r.high,
            comparisons=r.comparisons,
            component=r.component,
        )
        for r in ratings.ratings
    ]
    chart = charts.interval_chart(
        [(row.name, row.rating, row.low, row.high) for row in rows],
        title="Bradley-Terry rating with 95% bootstrap interval",
        reference=BASE_RATING,
        reference_label="1000 = average",
        highlight=[row.name for row in rows if row.status == "active" and row.kind == "policy"],
    )
    return Leaderboard(
        rows=rows,
        chart=chart,
        rankings=ratings.rankings,
        rounds=ratings.rounds,
        components=len({r.component for r in rows}),
        computed_at=dt.datetime.fromtimestamp(ratings.computed_at, dt.UTC),
    )


def leaderboard_table(session: Session, project_id: int | None = None) -> charts.Table:
    """The leaderboard chart's data."""
    board = leaderboard(session, project_id)
    return charts.Table(
        "leaderboard",
        (
            "rank",
            "version_id",
            "name",
            "kind",
            "status",
            "rating",
            "ci_low",
            "ci_high",
            "comparisons",
            "component",
        ),
        [
            (
                i + 1,
                r.version,
                r.name,
                r.kind,
                r.status,
                round(r.rating, 1),
                round(r.low, 1),
                round(r.high, 1),
                r.comparisons,
                r.component,
            )
            for i, r in enumerate(board.rows)
        ],
    )


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard_page(request: Request, db: DB, user: AdminUser, project: ProjectParam) -> Response:
    return render(
        request, "admin/leaderboard.html", {"p": leaderboard(db, project), **project_context(db, project)}
    )


@router.get("/leaderboard.{fmt}")
def leaderboard_data(db: DB, user: AdminUser, fmt: DataFormat, project: ProjectParam) -> Response:
    return data_response(leaderboard_table(db, project), fmt)
