"""Rules for accounts, logins, sessions and API tokens."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.auth import repository as repo
from app.auth import security, token_cache
from app.config import Settings
from app.errors import Conflict, Invalid, NotFound, TooManyRequests
from app.orm import ApiToken, LoginThrottle, Role, User
from app.projects import service as projects
from app.text import PASSWORD_CHARS, TOKEN_NAME_CHARS, check_text

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
IMPORTED_ANNOTATOR = "imported"
TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)


def create_user(session: Session, username: str, role: Role, password: str | None = None) -> tuple[User, str]:
    """Create a user; returns it with its password (generated when none was given)."""
    if not USERNAME_RE.match(username):
        raise Invalid("username must be 2-64 letters, digits or _ . @ -")
    if repo.get_user_by_name(session, username) is not None:
        raise Conflict(f"user {username!r} already exists")
    if password is not None:
        if len(password) < 8:
            raise Invalid("password must be at least 8 characters")
        check_text(password, "password", max_chars=PASSWORD_CHARS)
    password = password or security.generate_password()
    user = repo.add_user(session, username, role, security.hash_password(password))
    projects.join_default(session, user.id)
    return user, password


def imported_annotator(session: Session) -> User:
    """The account that outside human judgements are attributed to; it cannot log in."""
    return repo.ensure_user(session, IMPORTED_ANNOTATOR, Role.annotator, active=False)


def issue_api_token(session: Session, user: User, name: str = "") -> str:
    """Create an API token for a user and return it; only its digest is stored."""
    name = check_text(name.strip(), "name", one_line=True, max_chars=TOKEN_NAME_CHARS)
    token = security.generate_api_token()
    repo.add_api_token(session, user.id, security.digest(token), token[:10], name)
    return token


def user_from_api_token(session: Session, token: str) -> User | None:
    """The user behind a bearer token, recording its use.

    A token checked in the last few seconds by this process is not looked up again (app.auth.token_cache
    says what that may miss, and for how long).
    """
    digest = security.digest(token)
    now = dt.datetime.now(dt.UTC)
    cached = token_cache.get(digest)
    if cached is not None:
        if cached.last_used_at is None or now - cached.last_used_at >= TOKEN_USE_RESOLUTION:
            repo.mark_token_used(session, cached.token_id, now)
            cached.last_used_at = now
        return token_cache.attach_user(session, cached)
    asked_at = token_cache.clock()
    found = repo.user_for_token(session, digest)
    if found is None:
        return None
    user, api_token = found
    # To the minute is enough to see which tokens are in use; writing it on every request would add a
    # row update (and its WAL) to each API call and serialise one client's parallel requests on it.
    if api_token.last_used_at is None or now - api_token.last_used_at >= TOKEN_USE_RESOLUTION:
        api_token.last_used_at = now
    token_cache.put(digest, user, api_token.id, api_token.last_used_at, asked_at)
    return user


def user_from_session(session: Session, session_id: str) -> User | None:
    """The user of a live web session."""
    return repo.user_for_session(session, security.digest(session_id), dt.datetime.now(dt.UTC))


@dataclass
class LoginResult:
    user: User
    session_id: str


@dataclass(frozen=True)
class Throttle:
    failures: int
    last_failure_at: dt.datetime | None


def _live(t: Throttle, now: dt.datetime, window: float) -> tuple[int, float]:
    """Failures still counting (none once the last is older than the window) and seconds since the last."""
    if t.last_failure_at is None:
        return 0, 0.0
    elapsed = (now - t.last_failure_at).total_seconds()
    return (t.failures if elapsed < window else 0), elapsed


def _delay(t: Throttle, now: dt.datetime, settings: Settings) -> float:
    """Seconds left of the growing delay after this key's failures (login_delay_seconds once
    login_max_failures have failed, doubling with each further one, at most login_max_delay_seconds)."""
    failures, elapsed = _live(t, now, float(settings.login_window_seconds))
    if failures < settings.login_max_failures:
        return 0.0
    doublings = min(failures - settings.login_max_failures, 30)
    return min(settings.login_delay_seconds * 2**doublings, settings.login_max_delay_seconds) - elapsed


def throttle_wait(
    pair: Throttle, user: Throttle, address: Throttle, now: dt.datetime, settings: Settings
) -> float:
    """Seconds before this username may try a password from this address again (0: now).

    - the (username, address) pair: blocked after login_max_failures failures, for login_window_seconds
      after the last; the only hard block, so it stops a guesser without touching the user elsewhere;
    - the username from any address, and the address for any username (password spraying): growing
      delays. Someone elsewhere can so slow a user's logins down by at most the longest delay, never lock
      them out, and still gets no more than one guess per delay.
    """
    window = float(settings.login_window_seconds)
    waits = [0.0, _delay(user, now, settings), _delay(address, now, settings)]
    failures, elapsed = _live(pair, now, window)
    if failures >= settings.login_max_failures:
        waits.append(window - elapsed)
    return max(waits)


def _throttle_keys(username: str, client_ip: str) -> tuple[str, str, str]:
    name, address = username.lower()[:100], client_ip[:200]
    return f"pair:{name}|{address}", f"user:{name}", f"addr:{address}"


def _state(row: LoginThrottle) -> Throttle:
    return Throttle(row.failures, row.last_failure_at)


def login(session: Session, settings: Settings, username: str, password: str, client_ip: str) -> LoginResult:
    """Check credentials (throttled, see `throttle_wait`) and open a server-side session.

    The throttle rows are locked before the password is checked, so simultaneous attempts are counted
    one after the other: never more password checks than the limits allow. A success clears only this
    user's failures (from this address, and the username's delays), not the address's.
    """
    keys = _throttle_keys(username, client_ip)
    rows, now = repo.lock_throttles(session, keys)
    pair, user_row, address = (rows[k] for k in keys)
    wait = throttle_wait(_state(pair), _state(user_row), _state(address), now, settings)
    if wait > 0:
        seconds = math.ceil(wait)
        raise TooManyRequests(f"too many failed logins; try again in {seconds} seconds", retry_after=seconds)
    user = repo.get_user_by_name(session, username)
    ok = security.verify_password(password, user.password_hash if user else None)
    if user is None or not ok or not user.active:
        window = float(settings.login_window_seconds)
        counted = [pair, user_row, address]
        repo.record_login_failure(session, counted, [_live(_state(r), now, window)[0] + 1 for r in counted])
        repo.prune_throttles(session, now - dt.timedelta(seconds=window))
        raise Invalid("wrong username or password", status_code=401)
    repo.reset_throttles(session, [pair, user_row])
    session_id = security.generate_session_id()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=settings.session_hours)
    repo.add_web_session(session, security.digest(session_id), user.id, expires)
    user.last_login_at = dt.datetime.now(dt.UTC)
    return LoginResult(user=user, session_id=session_id)


def logout(session: Session, session_id: str) -> None:
    """Revoke a web session."""
    repo.delete_web_session(session, security.digest(session_id))


# --- account management by admins (the dashboard's Users page) -----------------------------------------


def get_user(session: Session, user_id: int) -> User:
    """A user by id, or 404."""
    user = repo.get_user(session, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


def _managed(session: Session, actor: User, user_id: int, action: str) -> User:
    """The user an admin acts on; never the admin themselves (no locking yourself out) nor `imported`."""
    user = get_user(session, user_id)
    if user.id == actor.id:
        raise Conflict(f"you cannot {action} your own account; ask another admin")
    if user.username == IMPORTED_ANNOTATOR:
        raise Conflict(
            f"{IMPORTED_ANNOTATOR!r} holds outside judgements and cannot log in; nothing to {action}"
        )
    return user


def set_role(session: Session, actor: User, user_id: int, role: Role) -> User:
    """Make a user an annotator or an admin."""
    user = _managed(session, actor, user_id, "change the role of")
    user.role = role
    session.flush()
    token_cache.forget_all(session)
    return user


def set_active(session: Session, actor: User, user_id: int, active: bool) -> User:
    """Deactivate (every web session and API token revoked) or reactivate a user.

    Revoked, not merely refused while inactive: reactivating a user brings none of them back, so a token
    that leaked before the deactivation stays dead; the user gets new ones.
    """
    user = _managed(session, actor, user_id, "deactivate" if not active else "reactivate")
    user.active = active
    if not active:
        repo.delete_user_sessions(session, user.id)
        repo.revoke_user_tokens(session, user.id, dt.datetime.now(dt.UTC))
    session.flush()
    token_cache.forget_all(session)
    return user


def reset_password(session: Session, actor: User, user_id: int) -> tuple[User, str]:
    """Give a user a new generated password (returned once), end their web sessions and revoke their API
    tokens: a reset is what one does when a credential may have leaked, tokens included."""
    user = _managed(session, actor, user_id, "reset the password of")
    password = security.generate_password()
    user.password_hash = security.hash_password(password)
    repo.delete_user_sessions(session, user.id)
    repo.revoke_user_tokens(session, user.id, dt.datetime.now(dt.UTC))
    session.flush()
    token_cache.forget_all(session)
    return user, password


def issue_api_token_for(session: Session, user_id: int, name: str) -> tuple[User, str]:
    """A new API token for a user (returned once; only its digest is stored)."""
    user = get_user(session, user_id)
    if user.username == IMPORTED_ANNOTATOR:
        raise Conflict(f"{IMPORTED_ANNOTATOR!r} cannot log in, so it gets no API token")
    return user, issue_api_token(session, user, name)


def revoke_api_token(session: Session, user_id: int, token_id: int) -> ApiToken:
    """Revoke one of a user's API tokens (revoking twice is harmless)."""
    token = repo.get_api_token(session, token_id)
    if token is None or token.user_id != user_id:
        raise NotFound(f"user {user_id} has no API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = dt.datetime.now(dt.UTC)
        session.flush()
    token_cache.forget_all(session)
    return token


def api_tokens(session: Session, user_id: int) -> list[ApiToken]:
    """A user's API tokens, newest first (digests and prefixes only)."""
    return repo.list_api_tokens(session, user_id)
