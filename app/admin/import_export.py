"""The Import page (upload prompts, candidates, rankings or demonstrations) and the Export page's form, each
for the project the switcher chose (imports: the default project without one; exports: every project)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.common import page_router, project_context
from app.deps import DB, AdminUser, ProjectParam, SettingsDep
from app.errors import AppError
from app.projects import service as projects_service
from app.prompts import repository as prompts_repo
from app.prompts import service as prompts
from app.prompts.schemas import ImportKind
from app.prompts.uploads import ImportUpload, read_import_upload
from app.web import render

router = page_router()


def _import_context(
    db: DB, settings: SettingsDep, project: int | None, upload: ImportUpload | None = None
) -> dict[str, object]:
    # An import goes into one project: the chosen one, else the default project.
    chosen = projects_service.project_or_default(db, project)
    return {
        **project_context(db, chosen.id),
        "project": chosen,
        "kinds": list(ImportKind),
        "max_mib": settings.max_upload_bytes / 1024 / 1024,
        "upload": upload,
        "summary": None,
        "error": None,
    }


@router.get("/import", response_class=HTMLResponse)
def import_page(
    request: Request, db: DB, user: AdminUser, settings: SettingsDep, project: ProjectParam
) -> Response:
    return render(request, "admin/import.html", _import_context(db, settings, project))


@router.post("/import", response_class=HTMLResponse)
def import_submit(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    project: ProjectParam,
    upload: Annotated[ImportUpload, Depends(read_import_upload)],
) -> Response:
    ctx = _import_context(db, settings, project, upload)
    into = projects_service.project_or_default(db, project).id
    try:
        ctx["summary"] = prompts.import_file(
            db, settings, upload.data, upload.kind, upload.prompt_set, upload.filename, project_id=into
        )
    except AppError as exc:
        db.rollback()
        ctx["error"] = exc.message
        return render(request, "admin/import.html", ctx, block="result", status_code=exc.status_code)
    return render(request, "admin/import.html", ctx, block="result")


@router.get("/export", response_class=HTMLResponse)
def export_page(request: Request, db: DB, user: AdminUser, project: ProjectParam) -> Response:
    # The prompt sets an export can be limited to (of the chosen project).
    names = [name for _, name in prompts_repo.all_prompt_sets(db, project)]
    return render(request, "admin/export.html", {"prompt_sets": names, **project_context(db, project)})
