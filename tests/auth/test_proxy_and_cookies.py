"""Addresses and schemes from proxy headers only behind a configured proxy; the session cookie's Secure
attribute; API tokens revoked by a password reset or a deactivation (issue 12, part 4)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from app.orm import Role
from tests.conftest import csrf_from, login


@contextmanager
def client_with(
    monkeypatch: pytest.MonkeyPatch, base_url: str = "http://testserver", **env: str
) -> Iterator[TestClient]:
    """An app built under these RANKLOOP_ settings (the middleware reads them when the app is made)."""
    from app.main import create_app

    with monkeypatch.context() as m:
        for key, value in env.items():
            m.setenv(f"RANKLOOP_{key.upper()}", value)
        get_settings.cache_clear()
        try:
            with TestClient(create_app(), base_url=base_url) as client:
                yield client
        finally:
            m.undo()
            get_settings.cache_clear()


def try_login(client: TestClient, name: str, password: str, headers: dict[str, str] | None = None) -> int:
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": csrf_from(page.text)},
        headers=headers or {},
        follow_redirects=False,
    )
    return r.status_code


def session_cookie(response) -> str:
    cookies = [
        v
        for k, v in response.headers.multi_items()
        if k == "set-cookie" and v.startswith("rankloop_session=")
    ]
    assert cookies, response.headers
    return cookies[-1]


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_configured(clean_db, make_user, monkeypatch):
    name, pw = make_user("ann")
    with client_with(monkeypatch, login_delay_seconds="0") as client:
        for i in range(5):
            assert try_login(client, name, "wrong-guess", {"X-Forwarded-For": f"203.0.113.{i}"}) == 401
        # Every guess came from the one real connection, whatever the header claimed: that one is blocked.
        assert try_login(client, name, pw, {"X-Forwarded-For": "198.51.100.7"}) == 429


def test_behind_a_configured_proxy_the_forwarded_address_counts(clean_db, make_user, monkeypatch):
    name, pw = make_user("ann")
    # The test client connects as "testclient": here, the configured proxy.
    with client_with(monkeypatch, trusted_proxies="testclient", login_delay_seconds="0") as client:
        for _ in range(5):
            assert try_login(client, name, "wrong-guess", {"X-Forwarded-For": "203.0.113.9"}) == 401
        assert try_login(client, name, pw, {"X-Forwarded-For": "203.0.113.9"}) == 429
        assert try_login(client, name, pw, {"X-Forwarded-For": "198.51.100.7"}) == 303


@pytest.mark.parametrize(
    ("env", "base_url", "headers", "secure"),
    [
        ({}, "http://testserver", {}, False),
        ({}, "https://testserver", {}, True),
        # A client's own X-Forwarded-Proto means nothing without a configured proxy ...
        ({}, "http://testserver", {"X-Forwarded-Proto": "https"}, False),
        # ... and is the scheme behind one.
        ({"trusted_proxies": "testclient"}, "http://testserver", {"X-Forwarded-Proto": "https"}, True),
        ({"cookie_secure": "always"}, "http://testserver", {}, True),
        ({"cookie_secure": "never"}, "https://testserver", {}, False),
    ],
)
def test_the_session_cookie_is_secure_over_https(
    clean_db, make_user, monkeypatch, env, base_url, headers, secure
):
    name, pw = make_user("ann")
    with client_with(monkeypatch, base_url=base_url, **env) as client:
        page = client.get("/login", headers=headers)
        # Sent by hand: a client that spoke plain HTTP to the proxy would not send a Secure cookie back.
        pre_login = session_cookie(page).split(";")[0]
        client.cookies.clear()
        r = client.post(
            "/login",
            data={"username": name, "password": pw, "csrf_token": csrf_from(page.text)},
            headers={**headers, "Cookie": pre_login},
            follow_redirects=False,
        )
        assert r.status_code == 303
        cookie = session_cookie(r).lower()
        assert ("; secure" in cookie) is secure, cookie
        assert "httponly" in cookie and "samesite=lax" in cookie


def admin_post(client: TestClient, path: str, **data: str) -> None:
    token = csrf_from(client.get("/admin/users").text)
    r = client.post(path, data={"csrf_token": token, **data}, follow_redirects=False)
    assert r.status_code in (200, 303), r.text[:300]


def works(client: TestClient, token: str) -> bool:
    r = client.get("/api/v1/tasks/next", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (204, 401), r.text
    return r.status_code == 204


def user_id(name: str) -> int:
    from app.auth import repository
    from app.db import session_scope

    with session_scope() as s:
        user = repository.get_user_by_name(s, name)
        assert user is not None
        return user.id


@pytest.mark.parametrize(
    ("action", "undo"),
    [
        (lambda c, uid: admin_post(c, f"/admin/users/{uid}/password"), None),
        (
            lambda c, uid: admin_post(c, f"/admin/users/{uid}/active", active="false"),
            lambda c, uid: admin_post(c, f"/admin/users/{uid}/active", active="true"),
        ),
    ],
    ids=["password reset", "deactivation"],
)
def test_a_password_reset_or_a_deactivation_revokes_the_users_api_tokens(
    app_client, make_user, api_token, action: Callable, undo: Callable | None
):
    token = api_token("bot", Role.annotator)
    login(app_client, *make_user("root", Role.admin))
    assert works(app_client, token)
    uid = user_id("bot")
    action(app_client, uid)
    assert not works(app_client, token)
    if undo is not None:
        # Reactivation brings none back: a token that leaked before stays dead.
        undo(app_client, uid)
        assert not works(app_client, token)
    page = app_client.get(f"/admin/users/{uid}").text
    assert "revoked" in page.lower()
