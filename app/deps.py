"""FastAPI dependencies: the per-request DB session, the current user, roles and CSRF."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.auth import service as auth_service
from app.auth.security import tokens_equal
from app.config import Settings, get_settings
from app.db import end_session, session_factory
from app.errors import Forbidden, LoginRequired
from app.orm import Role, User
from app.projects import service as projects
from app.text import check_all, label, strings


@dataclass(frozen=True)
class Viewer:
    id: int
    username: str
    role: str


SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


async def get_db() -> AsyncIterator[Session]:
    """One session per request, committed when the endpoint returns (before the response is sent)."""
    # Opening a session does no I/O (it connects on first use, in the endpoint's thread), so only its end
    # needs a worker thread: one thread hop per request fewer than a sync dependency.
    session = session_factory()()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(end_session, session, False)
        raise
    await run_in_threadpool(end_session, session, True)


# scope="function": commit before the response goes out, so a client never sees success for a lost write.
DB = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def optional_user(request: Request, db: DB) -> User | None:
    """The user from a bearer token or the session cookie, or None."""
    if hasattr(request.state, "user"):
        cached: User | None = request.state.user
        return cached
    token = bearer_token(request)
    user: User | None = None
    if token is not None:
        user = auth_service.user_from_api_token(db, token)
        if user is None:
            raise LoginRequired("invalid or revoked API token")
    else:
        sid = request.session.get("sid")
        if sid:
            user = auth_service.user_from_session(db, sid)
    request.state.user = user
    # A plain copy for templates: error pages render after a rollback has expired the ORM object.
    request.state.viewer = Viewer(user.id, user.username, user.role.value) if user else None
    return user


# Pure checks are async: a sync dependency would cost a thread hop per request.
async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    """Any logged-in, active user."""
    if user is None:
        raise LoginRequired("login required")
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    """A logged-in admin; annotators get 403."""
    if user.role != Role.admin:
        raise Forbidden("admin role required")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]


def project_param(
    db: DB,
    user: CurrentUser,
    project: Annotated[
        int | None,
        Query(
            ge=1,
            le=2**31 - 1,
            description="a project id: only this project's data (default: every project you see; for "
            "actions that need one, such as starting a round or an import, the default project)",
        ),
    ] = None,
) -> int | None:
    """The `project` query parameter every API route takes, checked: a project the user cannot see
    answers 404, like one that does not exist."""
    if project is not None:
        projects.visible(db, user, project)
    return project


ProjectParam = Annotated[int | None, Depends(project_param)]


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token, created on first use."""
    import secrets

    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


async def csrf_protect(request: Request) -> None:
    """Every state-changing request authenticated by cookie must carry the session's CSRF token.

    Bearer-token requests are exempt: a browser never attaches them on its own, so they cannot be forged.
    """
    if request.method in SAFE_METHODS or bearer_token(request) is not None:
        return
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not tokens_equal(expected, sent):
        raise Forbidden("missing or invalid CSRF token; reload the page and try again")


def _is_json(content_type: str) -> bool:
    # As FastAPI decides whether to decode a body as JSON: no content type, or application/json or */*+json.
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        not media
        or media == "application/json"
        or (media.startswith("application/") and media.endswith("+json"))
    )


async def text_rule(request: Request) -> None:
    """Every text of the query string, a JSON body or a form goes through app.text's rule (422 naming it).

    One check for every route, so no field can be forgotten: a lone surrogate, a NUL or another control
    character never reaches a service or PostgreSQL. Per-field rules (blank, one line, length) are the
    schemas' and services'. Multipart uploads are read by their own endpoint (app.prompts.uploads), which
    checks their fields, and the import parser checks the file.
    """
    check_all((f"query parameter {label(k)}", v) for k, v in request.query_params.multi_items())
    check_all((f"query parameter {label(k)} (the name)", k) for k in request.query_params)
    if request.method in SAFE_METHODS:
        return
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        check_all((label(k), k) for k in form)
        check_all((label(k), v) for k, v in form.multi_items() if isinstance(v, str))
    elif _is_json(content_type):
        body = await request.body()
        if not body:
            return
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return  # not JSON: FastAPI answers that itself
        check_all(strings(data))
