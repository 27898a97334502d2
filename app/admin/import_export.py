"""The Import page (upload prompts, candidates, rankings or demonstrations) and the Export page's form."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.common import page_router
from app.deps import DB, AdminUser, SettingsDep
from app.errors import AppError
from app.prompts import repository as prompts_repo
from app.prompts import service as prompts
from app.prompts.schemas import ImportKind
from app.prompts.uploads import ImportUpload, read_import_upload
from app.web import render

router = page_router()


def _import_context(settings: SettingsDep, upload: ImportUpload | None = None) -> dict[str, object]:
    return {
        "kinds": list(ImportKind),
        "max_mib": settings.max_upload_bytes / 1024 / 1024,
        "upload": upload,
        "summary": None,
        "error": None,
    }


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


@router.get("/export", response_class=HTMLResponse)
def export_page(request: Request, db: DB, user: AdminUser) -> Response:
    # The prompt sets an export can be limited to.
    names = [name for _, name in prompts_repo.all_prompt_sets(db)]
    return render(request, "admin/export.html", {"prompt_sets": names})
