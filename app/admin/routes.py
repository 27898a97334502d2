"""Admin pages (admins only): overview, rounds, model versions, leaderboard, annotators, users, data,
quality, import and export. Each URL serves the full page, or its main fragment to htmx; every chart's
data is also served as CSV or JSON (`.csv` / `.json` URLs)."""

from __future__ import annotations

import enum
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.admin import charts, rounds_view, service
from app.admin.schemas import ROUND_FIELDS, RankingQuery, RoundForm
from app.deps import DB, AdminUser, SettingsDep
from app.errors import AppError
from app.prompts import service as prompts
from app.prompts.schemas import ImportKind
from app.prompts.uploads import ImportUpload, read_import_upload
from app.web import is_htmx, render

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)

Page = Annotated[int, Query(ge=1, le=100_000)]


class DataFormat(enum.StrEnum):
    csv = "csv"
    json = "json"


def _data(table: charts.Table, fmt: DataFormat) -> Response:
    return charts.table_response(table, fmt.value)


def _redirect(target: str) -> Response:
    return RedirectResponse(target, status_code=303)


def _back(next_url: str, default: str) -> Response:
    # Only admin pages of this site: a crafted form must not bounce an admin elsewhere.
    ok = next_url.startswith("/admin") and "//" not in next_url and "\\" not in next_url
    return _redirect(next_url if ok else default)


def _secret(response: Response) -> Response:
    # The page shows a password or token once: keep it out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- overview ---------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def admin_home(request: Request, db: DB, settings: SettingsDep, user: AdminUser) -> Response:
    return render(request, "admin/index.html", {"d": service.dashboard(db, settings)})


@router.get("/charts/rankings-per-day.{fmt}")
def rankings_per_day_data(
    db: DB, user: AdminUser, fmt: DataFormat, days: Annotated[int, Query(ge=1, le=3660)] = 30
) -> Response:
    return _data(service.rankings_per_day_table(db, days), fmt)


# --- import / export ----------------------------------------------------------------------------


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, user: AdminUser, settings: SettingsDep) -> Response:
    return render(request, "admin/import.html", _import_context(settings))


@router.post("/import", response_class=HTMLResponse)
def import_submit(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    upload: Annotated[ImportUpload, Depends(read_import_upload)],
) -> Response:
    ctx = _import_context(settings, upload)
    try:
        ctx["summary"] = prompts.import_file(
            db, settings, upload.data, upload.kind, upload.prompt_set, upload.filename
        )
    except AppError as exc:
        db.rollback()
        ctx["error"] = exc.message
        return render(request, "admin/import.html", ctx, block="result", status_code=exc.status_code)
    return render(request, "admin/import.html", ctx, block="result")


def _import_context(settings: SettingsDep, upload: ImportUpload | None = None) -> dict[str, object]:
    return {
        "kinds": list(ImportKind),
        "max_mib": settings.max_upload_bytes / 1024 / 1024,
        "upload": upload,
        "summary": None,
        "error": None,
    }


@router.get("/export", response_class=HTMLResponse)
def export_page(request: Request, db: DB, user: AdminUser) -> Response:
    return render(request, "admin/export.html", {"prompt_sets": service.prompt_set_names(db)})


# --- rounds -------------------------------------------------------------------------------------


@router.get("/rounds", response_class=HTMLResponse)
def rounds_page(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/rounds.html", {"p": rounds_view.rounds_page(db, page)})


async def _round_form(request: Request) -> RoundForm:
    """The start form's known fields and extra `key=value` lines (other fields are ignored)."""
    form = await request.form()
    values = {key: str(form.get(key) or "")[:200] for key, _, _ in ROUND_FIELDS}
    return RoundForm(values=values, extra=str(form.get("extra") or ""))


@router.post("/rounds", response_class=HTMLResponse)
def start_round(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    form: Annotated[RoundForm, Depends(_round_form)],
) -> Response:
    try:
        row = rounds_view.start_round(db, settings, form, user)
    except AppError as exc:
        db.rollback()
        page = rounds_view.rounds_page(db, 1, form, exc.message)
        return render(request, "admin/rounds.html", {"p": page}, status_code=exc.status_code)
    return _redirect(f"/admin/rounds/{row.id}")


@router.get("/rounds/{round_id}", response_class=HTMLResponse)
def round_page(request: Request, db: DB, user: AdminUser, round_id: int) -> Response:
    return render(request, "admin/round.html", {"v": rounds_view.round_view(db, round_id)})


@router.get("/rounds/{round_id}/progress", response_class=HTMLResponse)
def round_progress(request: Request, db: DB, user: AdminUser, round_id: int) -> Response:
    """The live part of a round's page (htmx polls it while the round runs)."""
    return render(request, "admin/round.html", {"v": rounds_view.round_view(db, round_id)}, block="progress")


@router.get("/rounds/{round_id}/loss.{fmt}")
def round_loss_data(db: DB, user: AdminUser, round_id: int, fmt: DataFormat) -> Response:
    return _data(rounds_view.loss_table(db, round_id), fmt)


@router.post("/rounds/{round_id}/cancel", response_class=HTMLResponse)
def cancel_round(request: Request, db: DB, user: AdminUser, round_id: int) -> Response:
    rounds_view.cancel_round(db, round_id)
    if is_htmx(request):
        return render(
            request, "admin/round.html", {"v": rounds_view.round_view(db, round_id)}, block="progress"
        )
    return _redirect(f"/admin/rounds/{round_id}")


# --- model versions --------------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, db: DB, user: AdminUser, promoted: int | None = None) -> Response:
    return render(request, "admin/models.html", {"p": rounds_view.models_page(db, promoted)})


@router.get("/models.{fmt}")
def models_data(db: DB, user: AdminUser, fmt: DataFormat) -> Response:
    return _data(rounds_view.models_table(db), fmt)


@router.get("/models/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, db: DB, user: AdminUser, a: int | None = None, b: int | None = None, page: Page = 1
) -> Response:
    return render(request, "admin/compare.html", {"p": rounds_view.compare(db, a, b, page)})


@router.post("/models/{version_id}/promote")
def promote(db: DB, user: AdminUser, version_id: int) -> Response:
    version = rounds_view.promote(db, version_id)
    return _redirect(f"/admin/models?promoted={version.id}")


# --- leaderboard ---------------------------------------------------------------------------------


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard_page(request: Request, db: DB, user: AdminUser) -> Response:
    return render(request, "admin/leaderboard.html", {"p": service.leaderboard(db)})


@router.get("/leaderboard.{fmt}")
def leaderboard_data(db: DB, user: AdminUser, fmt: DataFormat) -> Response:
    return _data(service.leaderboard_table(db), fmt)


# --- annotators --------------------------------------------------------------------------------


@router.get("/annotators", response_class=HTMLResponse)
def annotators_page(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/annotators.html", {"p": service.annotators_page(db, page)})


@router.get("/annotators.{fmt}")
def annotators_data(db: DB, user: AdminUser, fmt: DataFormat) -> Response:
    return _data(service.annotators_table(db), fmt)


@router.get("/annotators/{user_id}", response_class=HTMLResponse)
def annotator_page(request: Request, db: DB, user: AdminUser, user_id: int, page: Page = 1) -> Response:
    return render(request, "admin/annotator.html", {"p": service.annotator_detail(db, user_id, page)})


@router.get("/annotators/{user_id}/timing.{fmt}")
def annotator_timing_data(db: DB, user: AdminUser, user_id: int, fmt: DataFormat) -> Response:
    return _data(service.annotator_timing_table(db, user_id), fmt)


# --- users ------------------------------------------------------------------------------------------


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/users.html", {"p": service.users_page(db, page), "error": None})


@router.post("/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    db: DB,
    user: AdminUser,
    username: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=20)] = "annotator",
) -> Response:
    try:
        page = service.create_user(db, username, role)
    except AppError as exc:
        db.rollback()
        ctx = {"p": service.users_page(db, 1), "error": exc.message, "username": username}
        return render(request, "admin/users.html", ctx, status_code=exc.status_code)
    return _secret(render(request, "admin/users.html", {"p": page, "error": None}))


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(request: Request, db: DB, user: AdminUser, user_id: int) -> Response:
    return render(request, "admin/user.html", {"p": service.user_detail(db, user_id)})


@router.post("/users/{user_id}/role", response_class=HTMLResponse)
def set_role(
    request: Request, db: DB, user: AdminUser, user_id: int, role: Annotated[str, Form(max_length=20)]
) -> Response:
    return render(request, "admin/user.html", {"p": service.set_user_role(db, user, user_id, role)})


@router.post("/users/{user_id}/active", response_class=HTMLResponse)
def set_active(
    request: Request, db: DB, user: AdminUser, user_id: int, active: Annotated[bool, Form()]
) -> Response:
    return render(request, "admin/user.html", {"p": service.set_user_active(db, user, user_id, active)})


@router.post("/users/{user_id}/password", response_class=HTMLResponse)
def reset_password(request: Request, db: DB, user: AdminUser, user_id: int) -> Response:
    return _secret(render(request, "admin/user.html", {"p": service.reset_user_password(db, user, user_id)}))


@router.post("/users/{user_id}/tokens", response_class=HTMLResponse)
def issue_token(
    request: Request, db: DB, user: AdminUser, user_id: int, name: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    return _secret(render(request, "admin/user.html", {"p": service.issue_user_token(db, user_id, name)}))


@router.post("/users/{user_id}/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke_token(request: Request, db: DB, user: AdminUser, user_id: int, token_id: int) -> Response:
    return render(request, "admin/user.html", {"p": service.revoke_user_token(db, user_id, token_id)})


# --- data ---------------------------------------------------------------------------------------------


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/data.html", {"p": service.prompt_sets_page(db, page)})


@router.post("/data/prompt-sets/{prompt_set_id}/priority")
def set_priority(
    db: DB,
    user: AdminUser,
    prompt_set_id: int,
    priority: Annotated[int, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data",
) -> Response:
    service.set_prompt_set_priority(db, prompt_set_id, priority)
    return _back(next, "/admin/data")


@router.post("/data/prompt-sets/{prompt_set_id}/paused")
def set_paused(
    db: DB,
    user: AdminUser,
    prompt_set_id: int,
    paused: Annotated[bool, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data",
) -> Response:
    service.set_prompt_set_paused(db, prompt_set_id, paused)
    return _back(next, "/admin/data")


@router.get("/data/rankings", response_class=HTMLResponse)
def rankings_page(request: Request, db: DB, user: AdminUser, q: Annotated[RankingQuery, Query()]) -> Response:
    return render(request, "admin/rankings.html", {"p": service.rankings_page(db, q)})


@router.get("/data/flags", response_class=HTMLResponse)
def flags_page(request: Request, db: DB, user: AdminUser, flag: str = "", page: Page = 1) -> Response:
    return render(request, "admin/flags.html", {"p": service.flags_page(db, flag, page)})


@router.post("/data/candidates/{candidate_id}/hidden")
def set_hidden(
    db: DB,
    user: AdminUser,
    candidate_id: int,
    hidden: Annotated[bool, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data/flags",
) -> Response:
    service.set_candidate_hidden(db, candidate_id, hidden)
    return _back(next, "/admin/data/flags")


@router.post("/data/rankings/{ranking_id}/dropped")
def set_dropped(
    db: DB,
    user: AdminUser,
    ranking_id: int,
    dropped: Annotated[bool, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data/rankings",
) -> Response:
    service.set_ranking_dropped(db, ranking_id, dropped)
    return _back(next, "/admin/data/rankings")


# --- quality ------------------------------------------------------------------------------------


@router.get("/quality", response_class=HTMLResponse)
def quality_page(request: Request, db: DB, user: AdminUser) -> Response:
    return render(request, "admin/quality.html", {"p": service.quality_page(db)})


@router.get("/quality/bias.{fmt}")
def bias_data(db: DB, user: AdminUser, fmt: DataFormat) -> Response:
    return _data(service.bias_table(db), fmt)


@router.get("/quality/agreement.{fmt}")
def agreement_data(db: DB, user: AdminUser, fmt: DataFormat) -> Response:
    return _data(service.agreement_table(db), fmt)


@router.get("/quality/consensus", response_class=HTMLResponse)
def consensus_page(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/consensus.html", {"p": service.consensus_page(db, page)})
