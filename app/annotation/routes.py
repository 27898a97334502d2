"""Annotator pages: the ranking task, its submission and skipping (full page, or the htmx fragment)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.annotation import service
from app.annotation.schemas import MAX_SKIP_REASON_CHARS, ranking_from_form
from app.deps import DB, CurrentUser, ProjectParam, SettingsDep
from app.orm import DEFAULT_FLAG_TYPES, Project
from app.projects import service as projects
from app.web import render

router = APIRouter(tags=["annotation"], include_in_schema=False)

# Completions longer than this start collapsed behind "Show more".
LONG_TEXT_CHARS = 700
LONG_TEXT_LINES = 14


def _page(
    request: Request, db: DB, settings: SettingsDep, user: CurrentUser, page: service.TaskPage
) -> Response:
    # The guidelines and flags are the task's project's; with no task, those of the project the page is
    # narrowed to, else the fixed defaults.
    shown: service.ProjectView | Project | None = page.task.project if page.task else None
    if shown is None and page.project_id is not None:
        shown = projects.visible(db, user, page.project_id)
    return render(
        request,
        "annotation/task.html",
        {
            "page": page,
            "project": shown,
            "projects": projects.projects_of(db, user),
            "qs": f"?project={page.project_id}" if page.project_id is not None else "",
            "flag_values": list(shown.flag_types) if shown is not None else list(DEFAULT_FLAG_TYPES),
            "max_rationale_chars": settings.max_rationale_chars,
            "max_reason_chars": MAX_SKIP_REASON_CHARS,
            "long_chars": LONG_TEXT_CHARS,
            "long_lines": LONG_TEXT_LINES,
            "utc": dt.UTC,
        },
        block="task",
    )


@router.get("/", response_class=HTMLResponse)
@router.get("/tasks/next", response_class=HTMLResponse)
def ranking_page(
    request: Request, db: DB, settings: SettingsDep, user: CurrentUser, project: ProjectParam
) -> Response:
    return _page(request, db, settings, user, service.task_page(db, settings, user, project_id=project))


@router.post("/tasks/{assignment_id}/rank", response_class=HTMLResponse)
def rank(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: CurrentUser,
    assignment_id: int,
    project: ProjectParam,
    rank: Annotated[list[str], Form(max_length=20)] = [],  # noqa: B006 (FastAPI copies defaults)
    flag: Annotated[list[str], Form(max_length=40)] = [],  # noqa: B006
    all_bad: Annotated[bool, Form()] = False,
    rationale: Annotated[str, Form()] = "",
    seconds_spent: Annotated[float | None, Form()] = None,
) -> Response:
    data = ranking_from_form(assignment_id, rank, flag, all_bad, rationale, seconds_spent)
    return _page(request, db, settings, user, service.rank_then_next(db, settings, user, data, project))


@router.post("/tasks/{assignment_id}/skip", response_class=HTMLResponse)
def skip(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: CurrentUser,
    assignment_id: int,
    project: ProjectParam,
    reason: Annotated[str, Form()] = "",
) -> Response:
    page = service.skip_then_next(db, settings, user, assignment_id, reason, project)
    return _page(request, db, settings, user, page)
