"""A short per-process memory of recently checked API tokens, so that a client's requests do not each
look their token up in the database.

What a cached entry may get wrong, and for how long: a token revoked, or a user deactivated or given
another role, by another process (another uvicorn worker, the CLI) still works as before in this one for
at most `TTL_SECONDS` after that change committed. Changes made through this process (app.auth.service)
clear the cache at once, and again when they commit.
Project membership is not cached: the hot statements read it themselves.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from app.db import persistent
from app.orm import User

TTL_SECONDS = 5.0
# Beyond this many live tokens the oldest entries are dropped (a bound, not a policy).
MAX_ENTRIES = 10_000


@dataclass
class Entry:
    user: dict[str, Any]  # the User row's column values
    token_id: int
    last_used_at: dt.datetime | None
    expires: float  # clock()


_entries: dict[str, Entry] = {}
_lock = threading.Lock()
_MAPPER = inspect(User)
_USER_COLUMNS = [attr.key for attr in _MAPPER.column_attrs]


def clock() -> float:
    """Seconds on this process's monotonic clock (a function of its own, for tests to move)."""
    return time.monotonic()


def get(digest: str) -> Entry | None:
    """The live entry for a token digest, or None (never cached, expired or cleared)."""
    entry = _entries.get(digest)
    if entry is None:
        return None
    if entry.expires <= clock():
        with _lock:
            _entries.pop(digest, None)
        return None
    return entry


def put(digest: str, user: User, token_id: int, last_used_at: dt.datetime | None, asked_at: float) -> None:
    """Remember a token just checked against the database; `asked_at`: clock() before the query was sent,
    so that the entry expires at most TTL_SECONDS after anything committed that the query did not see."""
    values = {key: getattr(user, key) for key in _USER_COLUMNS}
    entry = Entry(values, token_id, last_used_at, asked_at + TTL_SECONDS)
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            for key in list(_entries)[: MAX_ENTRIES // 10]:
                del _entries[key]
        _entries[digest] = entry


def clear() -> None:
    """Forget every entry."""
    with _lock:
        _entries.clear()


def forget_all(session: Session) -> None:
    """A token was revoked, or a user changed, in this session: forget every entry now, and again once
    the session commits. The second time is for a request of this process that looked a token up in
    between and remembered what the database said before the change was committed."""
    clear()
    event.listen(session, "after_commit", _clear_after_commit, once=True)


def _clear_after_commit(session: Session) -> None:
    clear()


def attach_user(session: Session, entry: Entry) -> User:
    """The entry's user as a persistent object of this session, without a query (its state as cached)."""
    existing = session.identity_map.get(_MAPPER.identity_key_from_primary_key((entry.user["id"],)))
    if isinstance(existing, User):
        return existing
    user: User = persistent(session, _MAPPER, entry.user)
    return user
