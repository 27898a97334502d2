"""The Rounds pages: the list with the start form, and one round's live progress, loss curves and metrics.

Starting goes through app.training.rounds (the one rule), cancelling through app.training.service;
reads come from app.training.repository.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin import charts
from app.admin.common import DataFormat, Page, data_response, page_router, redirect
from app.admin.paging import Pager
from app.admin.schemas import ROUND_FIELDS, RoundForm
from app.annotation import repository as annotation_repo
from app.auth import repository as auth_repo
from app.config import Settings
from app.deps import DB, AdminUser, SettingsDep
from app.errors import AppError
from app.orm import ModelVersion, Round, RoundKind, RoundStatus, User
from app.training import repository as training_repo
from app.training import rounds as training_rounds
from app.training import service as training
from app.training.config import RoundConfig
from app.web import is_htmx, render

router = page_router()

ROUNDS_PER_PAGE = 20


@dataclass(frozen=True)
class FieldView:
    key: str
    label: str
    kind: str
    default: Any
    help: str
    choices: list[str]
    value: str


@dataclass(frozen=True)
class RoundsPage:
    rounds: Sequence[Round]
    pager: Pager
    fields: list[FieldView]
    extra: str
    active: Round | None
    error: str | None = None


def _fields(values: dict[str, str]) -> list[FieldView]:
    described = RoundConfig.describe()
    return [
        FieldView(
            key=key,
            label=label,
            kind=kind,
            default=described[key]["default"],
            help=described[key]["help"],
            choices=described[key]["choices"],
            value=values.get(key, ""),
        )
        for key, label, kind in ROUND_FIELDS
    ]


def rounds_page(
    session: Session, page: int, form: RoundForm | None = None, error: str | None = None
) -> RoundsPage:
    """Rounds newest first, the start form (defaults shown), and the round in progress if any."""
    pager = Pager.of(page, ROUNDS_PER_PAGE, training_repo.count_rounds(session))
    form = form or RoundForm()
    return RoundsPage(
        rounds=training_repo.rounds_page(session, pager.per_page, pager.offset),
        pager=pager,
        fields=_fields(form.values),
        extra=form.extra,
        active=training_repo.current_round(session),
        error=error,
    )


def start_round(session: Session, settings: Settings, form: RoundForm, user: User) -> Round:
    """Queue a training round with the form's overrides (409 while another round is active)."""
    return training_rounds.start_round(session, settings, form.overrides(), requested_by_id=user.id)


@dataclass(frozen=True)
class RoundView:
    round: Round
    charts: list[charts.LineChart]
    percent: float | None
    eta: str
    elapsed: str
    active: bool
    versions: dict[int, ModelVersion]
    requested_by: str
    metric_rows: list[tuple[str, str]] = field(default_factory=list)
    generation: bool = False  # a generation-only job: no training, no loss
    noun: str = "Round"  # what the page calls it
    plan: str = ""  # a generation job's prompt set, version, K and sampling, in words


def _duration(seconds: float | None) -> str:
    """1h 02m, 3m 05s, 12s; empty for unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def loss_series(curve: Sequence[Any]) -> dict[str, list[tuple[float, float]]]:
    """The round's [stage, step, loss] points grouped by stage, in the order stages first appear."""
    series: dict[str, list[tuple[float, float]]] = {}
    for point in curve or []:
        if not isinstance(point, list | tuple) or len(point) != 3:
            continue
        stage, step, loss = point
        try:
            series.setdefault(str(stage), []).append((float(step), float(loss)))
        except (TypeError, ValueError):
            continue
    return series


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics as (dotted key, printable value) rows."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        else:
            rows.append((name, str(value)))
    return rows


def round_view(session: Session, round_id: int) -> RoundView:
    """A round's stage, progress, per-stage loss curves, ETA, log tail and metrics."""
    row = training.get_round(session, round_id)
    series = loss_series(row.loss_curve)
    drawn = [
        charts.line_chart(
            {stage: points}, title=f"{stage} loss", x_label="step", y_label="loss", width=360, height=200
        )
        for stage, points in series.items()
    ]
    active = row.status in (RoundStatus.queued, RoundStatus.running)
    end = row.finished_at or (annotation_repo.db_now(session) if row.started_at else None)
    elapsed = (end - row.started_at).total_seconds() if end and row.started_at else None
    versions = training_repo.model_versions_by_id(
        session, [v for v in (row.policy_version_id, row.reward_version_id) if v is not None]
    )
    requested = auth_repo.usernames(session, [row.requested_by_id] if row.requested_by_id else [])
    generation = row.kind == RoundKind.generate
    return RoundView(
        round=row,
        charts=drawn,
        percent=round(100 * row.step / row.total, 1) if row.total else None,
        eta=_duration(row.eta_seconds) if active else "",
        elapsed=_duration(elapsed),
        active=active,
        versions=versions,
        requested_by=requested.get(row.requested_by_id or 0, row.trigger),
        metric_rows=_flatten(row.metrics or {}),
        generation=generation,
        noun="Generation job" if generation else "Round",
        plan=_generation_plan(session, row.config or {}) if generation else "",
    )


def _generation_plan(session: Session, config: dict[str, Any]) -> str:
    """A generation job's settings in one line: which prompts, which version, K and sampling."""
    prompt_set = training_repo.get_prompt_set(session, int(config.get("prompt_set_id") or 0) or -1)
    version_id = int(config.get("model_version_id") or 0)
    version = training_repo.get_model_version(session, version_id) if version_id else None
    parts = [
        f"up to {config.get('generate_prompts')} prompts of "
        + (f"prompt set {prompt_set.name}" if prompt_set else "every unpaused prompt set"),
        f"K = {config.get('k')} from " + (version.name if version else "the active policy (and the newest)"),
        f"temperature {config.get('temperature')}, top-p {config.get('top_p')}, "
        f"at most {config.get('max_new_tokens')} new tokens",
    ]
    if config.get("human_replies"):
        parts.append(f"plus up to {config.get('human_replies')} human-written replies")
    return "; ".join(parts)


def loss_table(session: Session, round_id: int) -> charts.Table:
    """A round's loss curve as data."""
    row = training.get_round(session, round_id)
    points = [
        (stage, int(step), loss) for stage, pts in loss_series(row.loss_curve).items() for step, loss in pts
    ]
    return charts.Table(f"round-{round_id}-loss", ("stage", "step", "loss"), points)


async def _round_form(request: Request) -> RoundForm:
    """The start form's known fields and extra `key=value` lines (other fields are ignored)."""
    form = await request.form()
    values = {key: str(form.get(key) or "")[:200] for key, _, _ in ROUND_FIELDS}
    return RoundForm(values=values, extra=str(form.get("extra") or ""))


@router.get("/rounds", response_class=HTMLResponse)
def rounds_list(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/rounds.html", {"p": rounds_page(db, page)})


@router.post("/rounds", response_class=HTMLResponse)
def start_round_submit(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    form: Annotated[RoundForm, Depends(_round_form)],
) -> Response:
    try:
        row = start_round(db, settings, form, user)
    except AppError as exc:
        db.rollback()
        page = rounds_page(db, 1, form, exc.message)
        return render(request, "admin/rounds.html", {"p": page}, status_code=exc.status_code)
    return redirect(f"/admin/rounds/{row.id}")


@router.get("/rounds/{round_id}", response_class=HTMLResponse)
def round_page(request: Request, db: DB, user: AdminUser, round_id: int) -> Response:
    return render(request, "admin/round.html", {"v": round_view(db, round_id)})


@router.get("/rounds/{round_id}/progress", response_class=HTMLResponse)
def round_progress(request: Request, db: DB, user: AdminUser, round_id: int) -> Response:
    """The live part of a round's page (htmx polls it while the round runs)."""
    return render(request, "admin/round.html", {"v": round_view(db, round_id)}, block="progress")


@router.get("/rounds/{round_id}/loss.{fmt}")
def round_loss_data(db: DB, user: AdminUser, round_id: int, fmt: DataFormat) -> Response:
    return data_response(loss_table(db, round_id), fmt)


@router.post("/rounds/{round_id}/cancel", response_class=HTMLResponse)
def cancel_round_submit(request: Request, db: DB, user: AdminUser, round_id: int) -> Response:
    # A queued round is cancelled now, a running one at its next progress check.
    training.cancel_round(db, round_id)
    if is_htmx(request):
        return render(request, "admin/round.html", {"v": round_view(db, round_id)}, block="progress")
    return redirect(f"/admin/rounds/{round_id}")
