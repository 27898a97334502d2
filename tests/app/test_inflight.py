"""More concurrent requests than pooled connections queue in the event loop instead of deadlocking."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from app.config import get_settings
from app.db import reset_engine, session_scope
from tests.factories import make_comparison_set
from tests.live import serve

CLIENTS = 24


def _settings_env(monkeypatch, values: dict[str, str]) -> Iterator[None]:
    """These settings for the app under test (a fresh engine with its pool), the old ones afterwards."""
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_engine()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()
    reset_engine()


@pytest.fixture
def tiny_pool(clean_db, monkeypatch):
    # Two connections, two threads, a short checkout timeout: a deadlock would show as timeouts at once.
    yield from _settings_env(
        monkeypatch,
        {
            "RANKLOOP_DB_POOL_SIZE": "2",
            "RANKLOOP_DB_MAX_OVERFLOW": "0",
            "RANKLOOP_REQUEST_THREADS": "2",
            "RANKLOOP_REQUEST_QUEUE_SECONDS": "60",
        },
    )


def test_many_clients_on_two_connections_all_get_answers(tiny_pool, api_token):
    from app.main import create_app

    tokens = [api_token(f"ann{i}") for i in range(CLIENTS)]
    with session_scope() as s:
        for _ in range(CLIENTS):
            make_comparison_set(s, k=3, overlap=1)
    statuses: list[int] = []
    errors: list[str] = []
    with serve(create_app()) as url:
        start = threading.Barrier(CLIENTS)

        def client(token: str) -> None:
            try:
                start.wait()
                with httpx.Client(base_url=url, timeout=60) as c:
                    for _ in range(3):
                        r = c.get("/api/v1/tasks/next", headers={"Authorization": f"Bearer {token}"})
                        statuses.append(r.status_code)
            except Exception as exc:
                errors.append(repr(exc))

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        elapsed = time.monotonic() - t0
    assert not errors, errors
    assert statuses == [200] * (3 * CLIENTS), sorted(set(statuses))
    # Stalls end only when SQLAlchemy's checkout times out (30 s); a healthy run takes a few seconds.
    assert elapsed < 25, f"requests stalled for {elapsed:.1f} s"


@pytest.fixture
def few_threads(clean_db, monkeypatch):
    # More connections than threads: the thread count must bound the requests in progress.
    yield from _settings_env(
        monkeypatch,
        {"RANKLOOP_DB_POOL_SIZE": "8", "RANKLOOP_DB_MAX_OVERFLOW": "0", "RANKLOOP_REQUEST_THREADS": "2"},
    )


def test_submissions_queued_on_one_sets_row_lock_do_not_starve_each_other_of_threads(few_threads, api_token):
    from app.main import create_app

    tokens = [api_token(f"ann{i}") for i in range(CLIENTS)]
    with session_scope() as s:
        make_comparison_set(s, k=3, overlap=CLIENTS)  # everyone ranks the same set: one hot row lock
    statuses: list[int] = []
    errors: list[str] = []
    with serve(create_app()) as url:
        leased = threading.Barrier(CLIENTS)

        def client(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            try:
                with httpx.Client(base_url=url, timeout=30) as c:
                    task = c.get("/api/v1/tasks/next", headers=headers).json()
                    leased.wait(20)
                    body = {
                        "assignment_id": task["assignment_id"],
                        "tiers": [[x["id"]] for x in task["candidates"]],
                    }
                    statuses.append(c.post("/api/v1/rankings", headers=headers, json=body).status_code)
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
    assert not errors, errors[:3]
    assert statuses == [201] * CLIENTS
    assert elapsed < 25, f"submissions stalled for {elapsed:.1f} s"


def test_a_request_that_waits_too_long_for_a_slot_gets_503():
    import asyncio

    from app.inflight import InFlightLimit

    release = asyncio.Event()

    async def slow_app(scope, receive, send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limited = InFlightLimit(slow_app, limit=1, wait_seconds=0.2)
    sent: list[list[dict]] = [[], []]

    async def call(i: int) -> None:
        async def send(message: dict) -> None:
            sent[i].append(message)

        await limited({"type": "http", "path": "/api/v1/tasks/next"}, None, send)  # type: ignore[arg-type]

    async def scenario() -> None:
        first = asyncio.create_task(call(0))
        await asyncio.sleep(0.05)
        await call(1)  # waits 0.2 s behind the first, then gives up
        release.set()
        await first

    asyncio.run(scenario())
    assert sent[0][0]["status"] == 204
    assert sent[1][0]["status"] == 503
    assert (b"retry-after", b"1") in sent[1][0]["headers"]
