"""Admin pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import AdminUser
from app.web import render

router = APIRouter(prefix="/admin", tags=["admin"], include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def admin_home(request: Request, user: AdminUser) -> Response:
    return render(request, "admin/index.html", {})
