"""Per-process cache of the statistics, keyed by the state of the rankings table.

The expensive aggregates depend only on the live rankings, so each is cached under a fingerprint of the
rankings table (count, newest id and time, dropped ones): nothing is recomputed until a ranking is added,
dropped or restored, and then a statistic that is slow to compute (about a second at 100k rankings) is
served from the previous state while one background thread recomputes it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.quality import repository as repo

T = TypeVar("T")
# A statistic that took longer than this to compute is not recomputed while a request waits: the request
# gets the previous figures (their time is on the page) and one background thread brings them up to date.
SYNC_RECOMPUTE_SECONDS = 1.0

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    fingerprint: tuple[Any, ...]
    value: Any
    seconds: float  # what computing it cost
    computed_at: float
    refreshing: bool = False


_cache: dict[str, _Entry] = {}
_cache_lock = threading.Lock()
_key_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)


def clear_cache() -> None:
    """Forget every cached statistic (tests; after bulk changes outside the app)."""
    with _cache_lock:
        _cache.clear()


def cached(session: Session, key: str, compute: Callable[[Session], T]) -> T:
    """`compute(session)` once per state of the rankings table (per process); concurrent misses compute once.

    Cheap statistics are recomputed as soon as the rankings change; expensive ones are served from the
    previous state while a background thread recomputes them (stale-while-revalidate).
    """
    fingerprint = repo.ranking_fingerprint(session)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry.value
        if entry is not None and entry.seconds >= SYNC_RECOMPUTE_SECONDS:
            if not entry.refreshing:
                entry.refreshing = True
                threading.Thread(
                    target=_refresh, args=(key, compute), daemon=True, name=f"stats-{key}"
                ).start()
            return entry.value
    with _key_locks[key]:
        with _cache_lock:
            entry = _cache.get(key)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry.value
        return _store(key, fingerprint, session, compute)


def _store(key: str, fingerprint: tuple[Any, ...], session: Session, compute: Callable[[Session], T]) -> T:
    started = time.perf_counter()
    value = compute(session)
    with _cache_lock:
        _cache[key] = _Entry(fingerprint, value, time.perf_counter() - started, time.time())
    return value


def _refresh(key: str, compute: Callable[[Session], Any]) -> None:
    """Recompute one statistic on its own session (the request that triggered it has moved on)."""
    from app.db import session_scope

    try:
        with _key_locks[key], session_scope() as session:
            _store(key, repo.ranking_fingerprint(session), session, compute)  # a new entry: not refreshing
    except Exception:
        log.exception("recomputing dashboard statistic %s failed; the previous figures stay", key)
        with _cache_lock:
            entry = _cache.get(key)
            if entry is not None:
                entry.refreshing = False


def pending_refreshes() -> int:
    """How many background recomputations are running (a benchmark waits for them before it exits)."""
    with _cache_lock:
        return sum(1 for entry in _cache.values() if entry.refreshing)


def computed_at(*keys: str) -> dt.datetime | None:
    """When the oldest of these cached statistics was computed (pages say how fresh their figures are)."""
    with _cache_lock:
        times = [_cache[k].computed_at for k in keys if k in _cache]
    return dt.datetime.fromtimestamp(min(times), dt.UTC) if times else None
