"""The load benchmark's one-insert yardstick exists only when asked for, and does exactly one insert."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import get_settings
from app.db import sqlalchemy_url


def test_bench_endpoint_is_absent_by_default(app_client):
    assert app_client.post("/api/v1/_bench/insert", headers={"Authorization": "Bearer x"}).status_code == 404
    assert "/api/v1/_bench/insert" not in app_client.get("/openapi.json").json()["paths"]


@pytest.fixture
def bench_table(clean_db):
    from app.api.bench import create_table

    engine = create_engine(sqlalchemy_url(clean_db))
    with engine.begin() as conn:
        create_table(conn)
    yield engine
    # Not part of the schema: leave nothing behind for the ORM/migration comparison.
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_pings"))
    engine.dispose()


def test_bench_endpoint_inserts_one_row_per_request_when_enabled(bench_table, monkeypatch):
    monkeypatch.setenv("RANKLOOP_BENCH_ENDPOINTS", "1")
    get_settings.cache_clear()
    from app.main import create_app

    try:
        with TestClient(create_app()) as client:
            ids = [
                client.post("/api/v1/_bench/insert", headers={"Authorization": "Bearer x"}).json()["id"]
                for _ in range(3)
            ]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    with bench_table.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT id FROM bench_pings ORDER BY id"))]
    assert stored == ids and len(set(ids)) == 3
