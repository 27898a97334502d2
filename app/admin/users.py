"""The Users pages: every account, creating one, and one account's role, state, password and API tokens.

The rules (who may change whom, generated secrets) are app.auth.service's; a generated password or token is
shown once, on a page that is never cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin.common import PER_PAGE, Page, page_router, secret
from app.admin.paging import Pager
from app.annotation import activity_repository as activity
from app.auth import repository as auth_repo
from app.auth import service as auth
from app.deps import DB, AdminUser
from app.errors import AppError, Invalid
from app.orm import ApiToken, Role, User
from app.web import render

router = page_router()


@dataclass(frozen=True)
class UsersPage:
    users: list[auth_repo.UserRow]
    pager: Pager
    roles: list[str] = field(default_factory=lambda: [r.value for r in Role])
    created: str | None = None  # username just created
    secret: str | None = None  # its generated password, shown once


def users_page(session: Session, page: int) -> UsersPage:
    """Every account with its role, state and live API tokens."""
    pager = Pager.of(page, PER_PAGE, auth_repo.count_users(session))
    return UsersPage(auth_repo.user_rows(session, pager.per_page, pager.offset), pager)


def create_user(session: Session, username: str, role: str) -> UsersPage:
    """Create an account with a generated password, shown once on the returned page."""
    user, password = auth.create_user(session, username.strip(), _role(role))
    page = users_page(session, 1)
    return UsersPage(page.users, page.pager, created=user.username, secret=password)


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}") from None


@dataclass(frozen=True)
class UserDetail:
    user: User
    tokens: list[ApiToken]
    row: activity.AnnotatorRow | None
    roles: list[str] = field(default_factory=lambda: [r.value for r in Role])
    notice: str = ""
    secret: str | None = None  # a password or token just generated, shown once
    revealed_what: str = ""


def user_detail(session: Session, user_id: int, notice: str = "") -> UserDetail:
    """One account: role, state, API tokens, and its ranking figures."""
    user = auth.get_user(session, user_id)
    return UserDetail(
        user, auth.api_tokens(session, user_id), activity.annotator_row(session, user_id), notice=notice
    )


def set_user_role(session: Session, actor: User, user_id: int, role: str) -> UserDetail:
    """Change a user's role."""
    user = auth.set_role(session, actor, user_id, _role(role))
    return user_detail(session, user_id, f"{user.username} is now {user.role.value}.")


def set_user_active(session: Session, actor: User, user_id: int, active: bool) -> UserDetail:
    """Deactivate (sessions and API tokens revoked) or reactivate a user."""
    user = auth.set_active(session, actor, user_id, active)
    state = (
        "active again" if active else "deactivated; their sessions were ended and their API tokens revoked"
    )
    return user_detail(session, user_id, f"{user.username} is {state}.")


def reset_user_password(session: Session, actor: User, user_id: int) -> UserDetail:
    """A new generated password for a user, shown once."""
    user, password = auth.reset_password(session, actor, user_id)
    detail = user_detail(
        session,
        user_id,
        f"New password for {user.username}; their sessions were ended and their API tokens revoked.",
    )
    return UserDetail(
        detail.user,
        detail.tokens,
        detail.row,
        notice=detail.notice,
        secret=password,
        revealed_what="password",
    )


def issue_user_token(session: Session, user_id: int, name: str) -> UserDetail:
    """A new API token for a user, shown once."""
    user, token = auth.issue_api_token_for(session, user_id, name)
    detail = user_detail(session, user_id, f"New API token for {user.username}.")
    return UserDetail(
        detail.user, detail.tokens, detail.row, notice=detail.notice, secret=token, revealed_what="API token"
    )


def revoke_user_token(session: Session, user_id: int, token_id: int) -> UserDetail:
    """Revoke one of a user's API tokens."""
    token = auth.revoke_api_token(session, user_id, token_id)
    return user_detail(session, user_id, f"Token {token.prefix}… revoked.")


@router.get("/users", response_class=HTMLResponse)
def users_list(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/users.html", {"p": users_page(db, page), "error": None})


@router.post("/users", response_class=HTMLResponse)
def create_user_submit(
    request: Request,
    db: DB,
    user: AdminUser,
    username: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=20)] = "annotator",
) -> Response:
    try:
        page = create_user(db, username, role)
    except AppError as exc:
        db.rollback()
        ctx = {"p": users_page(db, 1), "error": exc.message, "username": username}
        return render(request, "admin/users.html", ctx, status_code=exc.status_code)
    return secret(render(request, "admin/users.html", {"p": page, "error": None}))


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(request: Request, db: DB, user: AdminUser, user_id: int) -> Response:
    return render(request, "admin/user.html", {"p": user_detail(db, user_id)})


@router.post("/users/{user_id}/role", response_class=HTMLResponse)
def set_role(
    request: Request, db: DB, user: AdminUser, user_id: int, role: Annotated[str, Form(max_length=20)]
) -> Response:
    return render(request, "admin/user.html", {"p": set_user_role(db, user, user_id, role)})


@router.post("/users/{user_id}/active", response_class=HTMLResponse)
def set_active(
    request: Request, db: DB, user: AdminUser, user_id: int, active: Annotated[bool, Form()]
) -> Response:
    return render(request, "admin/user.html", {"p": set_user_active(db, user, user_id, active)})


@router.post("/users/{user_id}/password", response_class=HTMLResponse)
def reset_password(request: Request, db: DB, user: AdminUser, user_id: int) -> Response:
    return secret(render(request, "admin/user.html", {"p": reset_user_password(db, user, user_id)}))


@router.post("/users/{user_id}/tokens", response_class=HTMLResponse)
def issue_token(
    request: Request, db: DB, user: AdminUser, user_id: int, name: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    return secret(render(request, "admin/user.html", {"p": issue_user_token(db, user_id, name)}))


@router.post("/users/{user_id}/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke_token(request: Request, db: DB, user: AdminUser, user_id: int, token_id: int) -> Response:
    return render(request, "admin/user.html", {"p": revoke_user_token(db, user_id, token_id)})
