"""Queries for users, API tokens, web sessions and failed logins."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.orm import ApiToken, LoginFailure, Role, User, WebSession


def get_user(session: Session, user_id: int) -> User | None:
    """The user with this id, or None."""
    return session.get(User, user_id)


def get_user_by_name(session: Session, username: str) -> User | None:
    """The user with this username (exact match), or None."""
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def list_users(session: Session) -> list[User]:
    """All users, by id."""
    return list(session.scalars(select(User).order_by(User.id)))


def add_user(
    session: Session, username: str, role: Role, password_hash: str | None, active: bool = True
) -> User:
    """Insert a user and flush so it has an id."""
    user = User(username=username, role=role, password_hash=password_hash, active=active)
    session.add(user)
    session.flush()
    return user


def ensure_user(session: Session, username: str, role: Role, active: bool) -> User:
    """The user with this name, inserted without a password if missing; safe when two callers race."""
    session.execute(
        pg_insert(User)
        .values(username=username, role=role, password_hash=None, active=active)
        .on_conflict_do_nothing(index_elements=[User.username])
    )
    return session.scalars(select(User).where(User.username == username)).one()


def add_api_token(session: Session, user_id: int, token_hash: str, prefix: str, name: str) -> ApiToken:
    """Insert an API token digest."""
    token = ApiToken(user_id=user_id, token_hash=token_hash, prefix=prefix, name=name)
    session.add(token)
    session.flush()
    return token


def user_for_token(session: Session, token_hash: str) -> tuple[User, ApiToken] | None:
    """The active user owning this unrevoked token digest."""
    row = session.execute(
        select(User, ApiToken)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None), User.active.is_(True))
    ).one_or_none()
    return (row[0], row[1]) if row else None


def list_api_tokens(session: Session, user_id: int) -> list[ApiToken]:
    """A user's tokens, newest first."""
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc()))
    )


def add_web_session(session: Session, id_hash: str, user_id: int, expires_at: dt.datetime) -> WebSession:
    """Insert a server-side session."""
    ws = WebSession(id_hash=id_hash, user_id=user_id, expires_at=expires_at)
    session.add(ws)
    session.flush()
    return ws


def user_for_session(session: Session, id_hash: str, now: dt.datetime) -> User | None:
    """The active user of an unexpired session."""
    return session.scalars(
        select(User)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.id_hash == id_hash, WebSession.expires_at > now, User.active.is_(True))
    ).one_or_none()


def delete_web_session(session: Session, id_hash: str) -> None:
    """Revoke one session."""
    session.execute(delete(WebSession).where(WebSession.id_hash == id_hash))


def delete_user_sessions(session: Session, user_id: int) -> None:
    """Revoke every session of a user (password reset, deactivation)."""
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))


def count_login_failures(session: Session, keys: list[str], since: dt.datetime) -> int:
    """The most failed logins recorded under any one of these keys since a moment."""
    counts = session.scalars(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.key.in_(keys), LoginFailure.created_at > since)
        .group_by(LoginFailure.key)
    )
    return max(counts, default=0)


def add_login_failures(session: Session, keys: list[str]) -> None:
    """Record one failed login under each key."""
    session.add_all(LoginFailure(key=k) for k in keys)
    session.flush()


def clear_login_failures(session: Session, keys: list[str]) -> None:
    """Forget failures after a successful login."""
    session.execute(delete(LoginFailure).where(LoginFailure.key.in_(keys)))


def get_api_token(session: Session, token_id: int) -> ApiToken | None:
    """One API token by id."""
    return session.get(ApiToken, token_id)


# --- the admin pages' user list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    role: str
    active: bool
    can_log_in: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    tokens: int  # unrevoked API tokens


def count_users(session: Session) -> int:
    """How many users there are."""
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def count_login_users(session: Session) -> int:
    """How many users have a password (`imported` and other outside annotators have none)."""
    stmt = select(func.count()).select_from(User).where(User.password_hash.is_not(None))
    return int(session.scalar(stmt) or 0)


def user_rows(session: Session, limit: int, offset: int) -> list[UserRow]:
    """Users by name, with their number of live API tokens."""
    tokens = (
        select(ApiToken.user_id, func.count().label("n"))
        .where(ApiToken.revoked_at.is_(None))
        .group_by(ApiToken.user_id)
        .subquery()
    )
    stmt = (
        select(User, func.coalesce(tokens.c.n, 0))
        .outerjoin(tokens, tokens.c.user_id == User.id)
        .order_by(User.username)
        .limit(limit)
        .offset(offset)
    )
    return [
        UserRow(
            u.id,
            u.username,
            u.role.value,
            u.active,
            u.password_hash is not None,
            u.created_at,
            u.last_login_at,
            int(n),
        )
        for u, n in session.execute(stmt)
    ]


def usernames(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """User id -> username."""
    if not ids:
        return {}
    return {
        int(i): str(n)
        for i, n in session.execute(select(User.id, User.username).where(User.id.in_(list(ids))))
    }
