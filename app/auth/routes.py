"""Login and logout pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import service
from app.deps import DB, SettingsDep, optional_user
from app.errors import AppError
from app.web import render

router = APIRouter(tags=["auth"], include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only same-site relative paths: an open redirect would let a phishing link bounce through us.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, db: DB, next: str | None = None) -> Response:
    if optional_user(request, db) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", {"next": _safe_next(next)})


@router.post("/login")
def login_submit(
    request: Request,
    db: DB,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    client_ip = request.client.host if request.client else "unknown"
    try:
        result = service.login(db, settings, username, password, client_ip)
    except AppError as exc:
        # Failed attempts must be stored even though we answer with an error, so commit here.
        db.commit()
        page = render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": exc.message, "username": username},
            status_code=exc.status_code,
        )
        if "retry_after" in exc.extra:
            page.headers["Retry-After"] = str(exc.extra["retry_after"])
        return page
    # A fresh cookie payload at login: nothing from the anonymous session (fixation) survives.
    request.session.clear()
    request.session["sid"] = result.session_id
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, db: DB) -> Response:
    sid = request.session.get("sid")
    if sid:
        service.logout(db, sid)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
