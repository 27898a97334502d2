"""A short per-process memory of recently checked API tokens, so that a client's requests do not each
look their token up in the database.

What a cached entry may get wrong, and for how long: a token revoked, or a user deactivated or given
another role, by another process (another uvicorn worker, the CLI) still works as before in this one for
at most `TTL_SECONDS`. Changes made through this process (app.auth.service) clear the cache at once.
Project membership is not cached: the hot statements read it themselves.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session, make_transient_to_detached

from app.orm import User

TTL_SECONDS = 5.0
# Beyond this many live tokens the oldest entries are dropped (a bound, not a policy).
MAX_ENTRIES = 10_000


@dataclass
class Entry:
    user: dict[str, Any]  # the User row's column values
    token_id: int
    last_used_at: dt.datetime | None
    expires: float  # time.monotonic()


_entries: dict[str, Entry] = {}
_lock = threading.Lock()
_MAPPER = inspect(User)
_USER_COLUMNS = [attr.key for attr in _MAPPER.column_attrs]


def get(digest: str) -> Entry | None:
    """The live entry for a token digest, or None (never cached, expired or cleared)."""
    entry = _entries.get(digest)
    if entry is None:
        return None
    if entry.expires <= time.monotonic():
        with _lock:
            _entries.pop(digest, None)
        return None
    return entry


def put(digest: str, user: User, token_id: int, last_used_at: dt.datetime | None) -> None:
    """Remember a token just checked against the database."""
    values = {key: getattr(user, key) for key in _USER_COLUMNS}
    entry = Entry(values, token_id, last_used_at, time.monotonic() + TTL_SECONDS)
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            for key in list(_entries)[: MAX_ENTRIES // 10]:
                del _entries[key]
        _entries[digest] = entry


def clear() -> None:
    """Forget every entry: a token was revoked, or a user changed, through this process."""
    with _lock:
        _entries.clear()


def attach_user(session: Session, entry: Entry) -> User:
    """The entry's user as a persistent object of this session, without a query (its state as cached)."""
    existing = session.identity_map.get(_MAPPER.identity_key_from_primary_key((entry.user["id"],)))
    if isinstance(existing, User):
        return existing
    user = User(**entry.user)
    make_transient_to_detached(user)
    session.add(user)
    return user
