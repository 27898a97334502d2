"""Login, sessions, roles, CSRF and API tokens, through the real app and database."""

from __future__ import annotations

from app.orm import Role
from tests.conftest import csrf_from, login


def test_login_then_logout_revokes_the_session(app_client, make_user):
    name, pw = make_user("ann")
    assert app_client.get("/", follow_redirects=False).status_code == 303
    login(app_client, name, pw)
    assert app_client.get("/").status_code == 200
    stolen = dict(app_client.cookies)
    page = app_client.get("/")
    app_client.post("/logout", data={"csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert app_client.get("/", follow_redirects=False).status_code == 303
    # The cookie captured while logged in is dead too: the session lives server-side.
    app_client.cookies.clear()
    for k, v in stolen.items():
        app_client.cookies.set(k, v)
    assert app_client.get("/", follow_redirects=False).status_code == 303


def test_wrong_password_is_rejected_and_throttled(app_client, make_user):
    name, pw = make_user("ann")
    for _ in range(5):
        page = app_client.get("/login")
        r = app_client.post(
            "/login", data={"username": name, "password": "nope-nope", "csrf_token": csrf_from(page.text)}
        )
        assert r.status_code == 401
    page = app_client.get("/login")
    r = app_client.post("/login", data={"username": name, "password": pw, "csrf_token": csrf_from(page.text)})
    assert r.status_code == 429
    assert "too many failed logins" in r.text


def test_login_without_csrf_token_is_forbidden(app_client, make_user):
    name, pw = make_user("ann")
    r = app_client.post("/login", data={"username": name, "password": pw})
    assert r.status_code == 403
    assert app_client.get("/", follow_redirects=False).status_code == 303


def test_pre_login_cookie_is_not_a_session_after_login(app_client, make_user):
    name, pw = make_user("ann")
    app_client.get("/login")
    before = app_client.cookies.get("rankloop_session")
    login(app_client, name, pw)
    app_client.cookies.clear()
    app_client.cookies.set("rankloop_session", before)
    assert app_client.get("/", follow_redirects=False).status_code == 303


def test_annotator_gets_403_on_admin_pages(app_client, make_user):
    name, pw = make_user("ann", Role.annotator)
    login(app_client, name, pw)
    assert app_client.get("/admin").status_code == 403


def test_bearer_token_authenticates_and_bad_token_is_401(app_client, api_token):
    token = api_token("bot", Role.admin)
    assert app_client.get("/admin", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    r = app_client.get("/admin", headers={"Authorization": "Bearer rl_wrong"}, follow_redirects=False)
    assert r.status_code in (303, 401)


def test_healthz_answers_when_the_database_does(app_client):
    r = app_client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_imported_annotator_is_created_once_even_when_two_imports_race(clean_db):
    import threading

    from app.auth import service
    from app.db import session_scope

    barrier = threading.Barrier(2)
    ids: list[int] = []
    errors: list[BaseException] = []

    def first_import() -> None:
        try:
            with session_scope() as session:
                barrier.wait()
                ids.append(service.imported_annotator(session).id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_import) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 1
