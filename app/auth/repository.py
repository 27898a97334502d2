"""Queries for users, API tokens, web sessions and login throttles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.orm import ApiToken, LoginThrottle, Role, User, WebSession


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


def mark_token_used(session: Session, token_id: int, now: dt.datetime) -> None:
    """Record that an API token was used (at most once a minute: see app.auth.service)."""
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


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


def lock_throttles(session: Session, keys: Sequence[str]) -> tuple[dict[str, LoginThrottle], dt.datetime]:
    """These keys' throttle rows, inserted where missing and locked until the transaction ends, and the
    database clock after the locks were granted.

    Locking (in key order, so two attempts never deadlock) before the password is checked makes
    simultaneous attempts count one after the other.
    """
    ordered = sorted(set(keys))
    for _ in range(3):
        session.execute(
            pg_insert(LoginThrottle)
            .values([{"key": k, "failures": 0} for k in ordered])
            .on_conflict_do_nothing(index_elements=[LoginThrottle.key])
        )
        rows = session.scalars(
            select(LoginThrottle)
            .where(LoginThrottle.key.in_(ordered))
            .order_by(LoginThrottle.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        found = {r.key: r for r in rows}
        # A row pruned between the insert and the lock is missing: insert it again.
        if len(found) == len(ordered):
            now = session.scalar(select(func.clock_timestamp()))
            assert now is not None
            return found, now
    raise RuntimeError("login throttle rows keep vanishing")  # pragma: no cover


def record_login_failure(session: Session, rows: Sequence[LoginThrottle], failures: Sequence[int]) -> None:
    """Store the new failure counts of locked throttle rows, timed by the database clock now (after the
    password check, so a delay runs from the moment the answer goes out)."""
    now = session.scalar(select(func.clock_timestamp()))
    for row, count in zip(rows, failures, strict=True):
        row.failures = count
        row.last_failure_at = now
    session.flush()


def reset_throttles(session: Session, rows: Sequence[LoginThrottle]) -> None:
    """Forget the failures of locked throttle rows (a successful login)."""
    for row in rows:
        row.failures = 0
        row.last_failure_at = None
    session.flush()


def prune_throttles(session: Session, before: dt.datetime) -> None:
    """Delete throttle rows with no failure since `before`; rows another attempt holds are left alone."""
    stale = (
        select(LoginThrottle.key)
        .where(or_(LoginThrottle.last_failure_at < before, LoginThrottle.last_failure_at.is_(None)))
        .with_for_update(skip_locked=True)
    )
    session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(stale)))


def revoke_user_tokens(session: Session, user_id: int, now: dt.datetime) -> int:
    """Revoke every live API token of a user; how many there were."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


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
