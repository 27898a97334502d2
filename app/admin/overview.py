"""The admin home page: counts, rankings per day, open work, the models in use and the round in progress, of
every project together or of the one chosen (?project=), with the projects side by side."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin import charts
from app.admin.common import DataFormat, data_response, page_router, project_context
from app.admin.projects import ProjectsPage, projects_page
from app.annotation import activity_repository as activity
from app.annotation import repository as annotation_repo
from app.auth import repository as auth_repo
from app.config import Settings
from app.deps import DB, AdminUser, ProjectParam, SettingsDep
from app.errors import Invalid
from app.orm import ModelKind, ModelStatus, ModelVersion, Project, Round, SetStatus
from app.projects import service as projects
from app.prompts import repository as prompts_repo
from app.training import repository as training_repo
from app.web import render

router = page_router()

OVERVIEW_DAYS = 30


@dataclass(frozen=True)
class Overview:
    prompt_sets: int
    prompts: int
    sets: int
    open_sets: int
    rankings: int  # live ones
    users: int  # who can log in


@dataclass(frozen=True)
class Dashboard:
    counts: Overview
    per_day: charts.BarChart
    per_day_total: int
    days: int
    active_annotators: int  # with a live ranking in the last 7 days
    open_sets: activity.OpenSets
    active_policy: ModelVersion | None
    reward_model: ModelVersion | None
    current_round: Round | None
    latest_round: Round | None
    auto_round_threshold: int
    rankings_since_last_round: int
    project: Project | None  # the one chosen; None: every project together
    projects: ProjectsPage | None  # the projects side by side, when there are several


def overview(session: Session, project_id: int | None = None) -> Overview:
    """Counts of prompt sets, prompts, comparison sets, live rankings (of one project) and users who can
    log in."""
    return Overview(
        prompt_sets=prompts_repo.count_prompt_sets(session, project_id),
        prompts=prompts_repo.count_prompts(session, project_id),
        sets=activity.count_sets(session, project_id=project_id),
        open_sets=activity.count_sets(session, SetStatus.open, project_id),
        rankings=activity.count_live_rankings(session, project_id=project_id),
        users=auth_repo.count_login_users(session),
    )


def _per_day(session: Session, days: int, project_id: int | None = None) -> list[tuple[dt.date, int]]:
    """Live rankings per UTC day for the last `days` days, zeros included (of one project)."""
    today = annotation_repo.db_now(session).astimezone(dt.UTC).date()
    start = today - dt.timedelta(days=days - 1)
    counts = dict(activity.rankings_per_day(session, start, project_id))
    return [(start + dt.timedelta(days=i), counts.get(start + dt.timedelta(days=i), 0)) for i in range(days)]


def dashboard(session: Session, settings: Settings, project_id: int | None = None) -> Dashboard:
    """The overview of one project, or of every project together (None): activity, open work, the models
    in use and the round in progress."""
    project = projects.project_or_default(session, project_id) if project_id is not None else None
    per_day = _per_day(session, OVERVIEW_DAYS, project_id)
    now = annotation_repo.db_now(session)
    policies = training_repo.list_model_versions(session, ModelKind.policy, ModelStatus.active, 1, project_id)
    latest = training_repo.list_rounds(session, None, 1, project_id)
    # The automatic round counts one project's rankings: the chosen one's, else the default project's.
    schedule = project or projects.default_project(session)
    side_by_side = projects_page(session, settings) if project is None else None
    return Dashboard(
        counts=overview(session, project_id),
        per_day=charts.bar_chart(
            [d.strftime("%b %d") for d, _ in per_day],
            [float(n) for _, n in per_day],
            title="Rankings per day (UTC)",
            label_every=5,
        ),
        per_day_total=sum(n for _, n in per_day),
        days=OVERVIEW_DAYS,
        active_annotators=activity.active_annotators(session, now - dt.timedelta(days=7), project_id),
        open_sets=activity.open_sets(session, project_id),
        active_policy=policies[0] if policies else None,
        reward_model=training_repo.newest_unfailed_reward_version(session, project_id),
        current_round=training_repo.current_round(session, project_id),
        latest_round=latest[0] if latest else None,
        auto_round_threshold=projects.resolved(schedule, settings).min_rankings,
        rankings_since_last_round=training_repo.rankings_since_last_training_round(session, schedule.id),
        project=project,
        projects=side_by_side if side_by_side is not None and len(side_by_side.rows) > 1 else None,
    )


def rankings_per_day_table(
    session: Session, days: int = OVERVIEW_DAYS, project_id: int | None = None
) -> charts.Table:
    """The rankings-per-day chart's data (of one project)."""
    if not 1 <= days <= 3660:
        raise Invalid("days must be between 1 and 3660")
    return charts.Table(
        "rankings-per-day",
        ("day", "rankings"),
        [(d.isoformat(), n) for d, n in _per_day(session, days, project_id)],
    )


@router.get("", response_class=HTMLResponse)
def admin_home(
    request: Request, db: DB, settings: SettingsDep, user: AdminUser, project: ProjectParam
) -> Response:
    ctx = {"d": dashboard(db, settings, project), **project_context(db, project)}
    return render(request, "admin/index.html", ctx)


@router.get("/charts/rankings-per-day.{fmt}")
def rankings_per_day_data(
    db: DB,
    user: AdminUser,
    fmt: DataFormat,
    project: ProjectParam,
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
) -> Response:
    return data_response(rankings_per_day_table(db, days, project), fmt)
