"""What every admin page module shares: the page query parameter, chart data responses, redirects, and
small formatting helpers."""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.admin import charts
from app.projects import service as projects

PER_PAGE = 50


def page_router() -> APIRouter:
    """A page module's router: under /admin, left out of the OpenAPI schema (routes.py gathers them)."""
    return APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)


Page = Annotated[int, Query(ge=1, le=100_000)]


class DataFormat(enum.StrEnum):
    csv = "csv"
    json = "json"


def data_response(table: charts.Table, fmt: DataFormat) -> Response:
    """A chart's data as the CSV or JSON download its `.csv` / `.json` URL serves."""
    return charts.table_response(table, fmt.value)


def project_context(session: Session, project_id: int | None) -> dict[str, Any]:
    """What a page with per-project figures needs for its project switcher and its data links."""
    return {
        "projects": projects.all_projects(session),
        "project_id": project_id,
        "qs": f"?project={project_id}" if project_id is not None else "",
    }


def redirect(target: str) -> Response:
    """303 See Other: after a form post the browser GETs the target."""
    return RedirectResponse(target, status_code=303)


def back(next_url: str, default: str) -> Response:
    """Redirect to the form's `next` admin page, or to `default` for anything else."""
    # Only admin pages of this site: a crafted form must not bounce an admin elsewhere.
    ok = next_url.startswith("/admin") and "//" not in next_url and "\\" not in next_url
    return redirect(next_url if ok else default)


def secret(response: Response) -> Response:
    """The page shows a password or token once: keep it out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


def letter(i: int) -> str:
    """A candidate's label by its 0-based position in its set: A, B, ..., then #27 on."""
    return chr(ord("A") + i) if i < 26 else f"#{i + 1}"


def rounded(value: float | None, digits: int = 4) -> float | None:
    """A figure for a data download: rounded, and None (empty / null) when missing or not finite."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)
