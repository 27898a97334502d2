"""Every request body is capped before anything parses it, including the CSRF check's form read."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings


@pytest.fixture
def small_limit_client(clean_db, monkeypatch):
    monkeypatch.setenv("RANKLOOP_MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client
    monkeypatch.undo()
    get_settings.cache_clear()


def test_declared_oversize_body_is_refused_before_login_or_csrf(small_limit_client):
    big = b"x" * (1000 + 70 * 1024)
    r = small_limit_client.post(
        "/login", content=big, headers={"content-type": "multipart/form-data; boundary=zzz"}
    )
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]


def test_streamed_oversize_body_without_length_is_refused(small_limit_client):
    def chunks():
        for _ in range(100):
            yield b"y" * 1024

    r = small_limit_client.post(
        "/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413


def test_small_bodies_pass(small_limit_client):
    r = small_limit_client.post("/login", data={"username": "a", "password": "b"})
    assert r.status_code == 403  # reached the CSRF check, which is the next guard
