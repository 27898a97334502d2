"""The Projects pages: every project side by side (open work, rankings per day, active policy), creating
one, and one project's guidelines, flag types, settings, round schedule and members.

The rules (names, flag words, K range, cron expressions) are app.projects.service's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.admin.common import page_router, redirect
from app.annotation import repository as annotation_repo
from app.auth import repository as auth_repo
from app.config import Settings
from app.deps import DB, AdminUser, SettingsDep
from app.errors import AppError, Invalid
from app.orm import ModelVersion, Project
from app.projects import repository as projects_repo
from app.projects import service as projects
from app.projects.schemas import ProjectIn, ProjectPatch
from app.training import repository as training_repo
from app.web import render

router = page_router()

OVERVIEW_DAYS = 14


@dataclass(frozen=True)
class ProjectRow:
    project: Project
    settings: projects.Resolved
    open_sets: int
    members: int
    per_day: list[int]  # live rankings per UTC day, oldest first, OVERVIEW_DAYS of them
    active_policy: ModelVersion | None


@dataclass(frozen=True)
class ProjectsPage:
    rows: list[ProjectRow]
    days: list[dt.date]

    @property
    def idle(self) -> bool:
        """No project has open work or recent rankings: the page says how work comes in."""
        return not any(r.open_sets or sum(r.per_day) for r in self.rows)


def projects_page(session: Session, settings: Settings) -> ProjectsPage:
    """The cross-project overview: open work, rankings per day and the active policy of each project."""
    projects.default_project(session)  # a fresh server shows where its data goes
    today = annotation_repo.db_now(session).astimezone(dt.UTC).date()
    days = [today - dt.timedelta(days=OVERVIEW_DAYS - 1 - i) for i in range(OVERVIEW_DAYS)]
    since = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    per_day = projects_repo.rankings_per_project_day(session, since)
    open_sets = projects_repo.open_sets_per_project(session)
    members = projects_repo.member_counts(session)
    policies = training_repo.active_policies(session)
    rows = [
        ProjectRow(
            project=p,
            settings=projects.resolved(p, settings),
            open_sets=open_sets.get(p.id, 0),
            members=members.get(p.id, 0),
            per_day=[per_day.get(p.id, {}).get(d, 0) for d in days],
            active_policy=policies.get(p.id),
        )
        for p in projects.all_projects(session)
    ]
    return ProjectsPage(rows, days)


@dataclass(frozen=True)
class ProjectDetail:
    project: Project
    settings: projects.Resolved
    users: list[auth_repo.UserRow]
    members: set[int]
    open_sets: int


def project_detail(session: Session, settings: Settings, project_id: int) -> ProjectDetail:
    project = projects.project_or_default(session, project_id)
    users = auth_repo.user_rows(session, 1000, 0)
    return ProjectDetail(
        project,
        projects.resolved(project, settings),
        users,
        set(projects.member_ids(session, project.id)),
        projects_repo.open_sets_per_project(session).get(project.id, 0),
    )


def _number(value: str, field: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise Invalid(f"{field}: a whole number, or empty for the server's setting")
    return int(value)


def _fraction(value: str, field: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 <= number <= 1:  # also refuses nan
        raise Invalid(
            f"{field}: a share from 0 to 1 (0.1: one task in ten), or empty for the server's setting"
        )
    return number


def _checked(
    model: type[ProjectIn] | type[ProjectPatch], data: dict[str, object]
) -> ProjectIn | ProjectPatch:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


@router.get("/projects", response_class=HTMLResponse)
def projects_index(request: Request, db: DB, settings: SettingsDep, user: AdminUser) -> Response:
    return render(request, "admin/projects.html", {"p": projects_page(db, settings)})


@router.post("/projects", response_class=HTMLResponse)
def create_project(
    request: Request, db: DB, settings: SettingsDep, user: AdminUser, name: Annotated[str, Form()] = ""
) -> Response:
    try:
        made = projects.create_project(db, _checked(ProjectIn, {"name": name}))  # type: ignore[arg-type]
    except AppError as exc:
        db.rollback()
        page = projects_page(db, settings)
        return render(
            request, "admin/projects.html", {"p": page, "error": exc.message}, status_code=exc.status_code
        )
    return redirect(f"/admin/projects/{made.id}")


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(
    request: Request, db: DB, settings: SettingsDep, user: AdminUser, project_id: int
) -> Response:
    return render(request, "admin/project.html", {"p": project_detail(db, settings, project_id)})


@router.post("/projects/{project_id}", response_class=HTMLResponse)
def update_project(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    project_id: int,
    name: Annotated[str, Form(max_length=100)] = "",
    guidelines: Annotated[str, Form(max_length=50_000)] = "",
    flag_types: Annotated[str, Form(max_length=600)] = "",
    k_min: Annotated[str, Form(max_length=10)] = "",
    k_max: Annotated[str, Form(max_length=10)] = "",
    overlap: Annotated[str, Form(max_length=10)] = "",
    lease_minutes: Annotated[str, Form(max_length=10)] = "",
    gold_rate: Annotated[str, Form(max_length=20)] = "",
    base_model: Annotated[str, Form(max_length=500)] = "",
    schedule_min_rankings: Annotated[str, Form(max_length=10)] = "",
    schedule_cron: Annotated[str, Form(max_length=100)] = "",
    member: Annotated[list[int], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
) -> Response:
    try:
        data = {
            "name": name,
            "guidelines": guidelines.replace("\r\n", "\n"),
            "flag_types": [f for f in flag_types.replace(",", " ").split() if f],
            "k_min": _number(k_min, "k_min"),
            "k_max": _number(k_max, "k_max"),
            "overlap": _number(overlap, "overlap"),
            "lease_minutes": _number(lease_minutes, "lease_minutes"),
            "gold_rate": _fraction(gold_rate, "gold_rate"),
            "base_model": base_model.strip() or None,
            "schedule_min_rankings": _number(schedule_min_rankings, "schedule_min_rankings"),
            "schedule_cron": schedule_cron,
        }
        projects.update_project(db, project_id, _checked(ProjectPatch, data))  # type: ignore[arg-type]
        for u in auth_repo.user_rows(db, 1000, 0):
            if u.id in member:
                projects.add_member(db, project_id, u.id)
            else:
                projects.remove_member(db, project_id, u.id)
    except AppError as exc:
        db.rollback()
        ctx = {"p": project_detail(db, settings, project_id), "error": exc.message}
        return render(request, "admin/project.html", ctx, status_code=exc.status_code)
    return redirect(f"/admin/projects/{project_id}?saved=1")
