"""User management from the admin pages: create, role, deactivate, reset password, API tokens."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth import service as auth
from app.db import session_scope
from app.errors import Conflict, NotFound
from app.orm import ApiToken, Role, User, WebSession
from tests.conftest import csrf_from, login


def user_id(name: str) -> int:
    with session_scope() as s:
        return s.scalars(select(User.id).where(User.username == name)).one()


def secret_of(html: str) -> str:
    m = re.search(r"<code class=\"secret-value\" data-secret>([^<]+)</code>", html)
    assert m, "no secret on the page"
    return m.group(1)


def fresh_client() -> TestClient:
    from app.main import create_app

    return TestClient(create_app())


def test_create_user_shows_the_password_once_and_it_works(admin):
    page = admin.get("/admin/users")
    token = csrf_from(page.text)
    r = admin.post("/admin/users", data={"csrf_token": token, "username": "newbie", "role": "annotator"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    password = secret_of(r.text)
    assert len(password) >= 12
    assert password not in admin.get("/admin/users").text  # shown once, never again
    other = fresh_client()
    login(other, "newbie", password)
    assert other.get("/", follow_redirects=False).status_code == 200
    r = admin.post("/admin/users", data={"csrf_token": token, "username": "newbie", "role": "annotator"})
    assert r.status_code == 409 and "already exists" in r.text
    r = admin.post("/admin/users", data={"csrf_token": token, "username": "x y", "role": "annotator"})
    assert r.status_code == 422
    r = admin.post("/admin/users", data={"csrf_token": token, "username": "boss2", "role": "overlord"})
    assert r.status_code == 422
    with session_scope() as s:
        assert s.scalars(select(User.username).order_by(User.username)).all() == ["newbie", "root"]


def test_role_change_and_deactivation_take_effect(admin, make_user):
    name, pw = make_user("worker", Role.annotator)
    uid = user_id(name)
    theirs = fresh_client()
    login(theirs, name, pw)
    assert theirs.get("/admin").status_code == 403
    token = csrf_from(admin.get(f"/admin/users/{uid}").text)
    r = admin.post(f"/admin/users/{uid}/role", data={"csrf_token": token, "role": "admin"})
    assert r.status_code == 200 and "worker is now admin" in r.text
    assert theirs.get("/admin").status_code == 200  # roles are read per request
    r = admin.post(f"/admin/users/{uid}/active", data={"csrf_token": token, "active": "false"})
    assert 'data-state="inactive"' in r.text
    with session_scope() as s:
        assert s.scalar(select(WebSession).where(WebSession.user_id == uid)) is None
        assert s.get(User, uid).active is False
    assert theirs.get("/admin", follow_redirects=False).status_code == 303  # session revoked: to login
    again = fresh_client()
    page = again.get("/login")
    r = again.post("/login", data={"username": name, "password": pw, "csrf_token": csrf_from(page.text)})
    assert r.status_code == 401
    admin.post(f"/admin/users/{uid}/active", data={"csrf_token": token, "active": "true"})
    login(again, name, pw)


def test_an_admin_cannot_lock_themselves_out(admin):
    uid = user_id("root")
    token = csrf_from(admin.get(f"/admin/users/{uid}").text)
    for path, data in (("active", {"active": "false"}), ("role", {"role": "annotator"}), ("password", {})):
        r = admin.post(f"/admin/users/{uid}/{path}", data={"csrf_token": token, **data})
        assert r.status_code == 409, path
    with session_scope() as s:
        me = s.get(User, uid)
        assert me.active and me.role == Role.admin


def test_reset_password_ends_sessions_and_only_the_new_one_works(admin, make_user):
    name, old = make_user("forgetful", Role.annotator)
    uid = user_id(name)
    theirs = fresh_client()
    login(theirs, name, old)
    token = csrf_from(admin.get(f"/admin/users/{uid}").text)
    r = admin.post(f"/admin/users/{uid}/password", data={"csrf_token": token})
    assert r.headers["cache-control"] == "no-store"
    new = secret_of(r.text)
    assert new != old
    assert theirs.get("/", follow_redirects=False).status_code == 303
    fresh = fresh_client()
    page = fresh.get("/login")
    bad = fresh.post("/login", data={"username": name, "password": old, "csrf_token": csrf_from(page.text)})
    assert bad.status_code == 401
    login(fresh_client(), name, new)


def test_api_tokens_are_shown_once_work_and_can_be_revoked(admin, make_user):
    name, _ = make_user("scripted", Role.annotator)
    uid = user_id(name)
    token = csrf_from(admin.get(f"/admin/users/{uid}").text)
    r = admin.post(f"/admin/users/{uid}/tokens", data={"csrf_token": token, "name": "labelling script"})
    api_token = secret_of(r.text)
    assert r.headers["cache-control"] == "no-store"
    bearer = {"Authorization": f"Bearer {api_token}"}
    client = fresh_client()
    assert client.get("/api/v1/tasks/next", headers=bearer).status_code in (200, 204)
    page = admin.get(f"/admin/users/{uid}").text
    assert api_token not in page and "labelling script" in page and api_token[:10] in page
    with session_scope() as s:
        token_id = s.scalars(select(ApiToken.id).where(ApiToken.user_id == uid)).one()
    r = admin.post(f"/admin/users/{uid}/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert r.status_code == 200 and "revoked" in r.text
    assert client.get("/api/v1/tasks/next", headers=bearer).status_code == 401
    # A token id of another user is not found under this user.
    assert (
        admin.post(
            f"/admin/users/{uid + 1000}/tokens/{token_id}/revoke", data={"csrf_token": token}
        ).status_code
        == 404
    )


def test_auth_service_guards(db):
    from tests.factories import make_annotator

    actor = make_annotator(db, "acting-admin", Role.admin)
    imported = auth.imported_annotator(db)
    with pytest.raises(Conflict):
        auth.reset_password(db, actor, imported.id)
    with pytest.raises(Conflict):
        auth.issue_api_token_for(db, imported.id, "nope")
    with pytest.raises(NotFound):
        auth.set_role(db, actor, 10**9, Role.admin)
    target = make_annotator(db, "target")
    user, password = auth.reset_password(db, actor, target.id)
    assert user.password_hash and password
    token = auth.revoke_api_token(db, target.id, db.get(ApiToken, _issue(db, target)).id)
    assert token.revoked_at is not None
    first = token.revoked_at
    assert auth.revoke_api_token(db, target.id, token.id).revoked_at == first  # idempotent


def _issue(db, user: User) -> int:
    auth.issue_api_token(db, user, "t")
    return db.scalars(select(ApiToken.id).where(ApiToken.user_id == user.id)).one()
