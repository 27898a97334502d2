"""The per-process memory of API tokens (app.auth.token_cache): a revoked token, a deactivated user or a
changed role is refused at once when changed through this process, and within TTL_SECONDS of the change's
commit when changed behind its back (another uvicorn worker, the CLI, SQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from app.auth import service as auth
from app.auth import token_cache
from app.db import session_factory, session_scope
from app.orm import ApiToken, Role, User


class Clock:
    """token_cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:  # type: ignore[no-untyped-def]
    fake = Clock()
    monkeypatch.setattr(token_cache, "clock", fake)
    return fake


def _status(app_client, token: str, path: str = "/api/v1/tasks/next") -> int:  # type: ignore[no-untyped-def]
    return int(app_client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code)


def _user_id(name: str) -> int:
    with session_scope() as s:
        return int(s.scalars(select(User.id).where(User.username == name)).one())


def _behind_its_back(statement) -> None:  # type: ignore[no-untyped-def]
    # As another process would: straight to the database, this process's memory untouched.
    with session_scope() as s:
        s.execute(statement)


def test_a_token_revoked_behind_its_back_is_refused_once_the_ttl_has_passed(app_client, api_token, clock):
    token = api_token("ann")
    assert _status(app_client, token) == 204  # checked in the database, remembered
    _behind_its_back(update(ApiToken).values(revoked_at=dt.datetime.now(dt.UTC)))
    clock.now += token_cache.TTL_SECONDS - 0.01
    assert _status(app_client, token) == 204  # the documented window: still the remembered answer
    clock.now += 0.01
    assert _status(app_client, token) == 401


def test_a_user_deactivated_behind_its_back_is_refused_once_the_ttl_has_passed(app_client, api_token, clock):
    token = api_token("ann")
    assert _status(app_client, token) == 204
    _behind_its_back(update(User).where(User.username == "ann").values(active=False))
    clock.now += token_cache.TTL_SECONDS
    assert _status(app_client, token) == 401


def test_a_role_taken_away_behind_its_back_is_gone_once_the_ttl_has_passed(app_client, api_token, clock):
    token = api_token("boss", Role.admin)
    assert _status(app_client, token, "/api/v1/rounds") == 200
    _behind_its_back(update(User).where(User.username == "boss").values(role=Role.annotator))
    clock.now += token_cache.TTL_SECONDS
    assert _status(app_client, token, "/api/v1/rounds") == 403


def test_changes_through_this_process_apply_at_once(app_client, api_token, clock):
    admin_token, ann_token, other_token = api_token("boss", Role.admin), api_token("ann"), api_token("bob")
    for token in (admin_token, ann_token, other_token):
        assert _status(app_client, token) == 204
    with session_scope() as s:
        actor = s.get(User, _user_id("boss"))
        assert actor is not None
        auth.set_role(s, actor, _user_id("ann"), Role.admin)
    assert _status(app_client, ann_token, "/api/v1/rounds") == 200  # the clock has not moved
    with session_scope() as s:
        token_id = s.scalars(select(ApiToken.id).where(ApiToken.user_id == _user_id("ann"))).one()
        auth.revoke_api_token(s, _user_id("ann"), token_id)
    assert _status(app_client, ann_token) == 401
    with session_scope() as s:
        actor = s.get(User, _user_id("boss"))
        assert actor is not None
        auth.set_active(s, actor, _user_id("bob"), False)
    assert _status(app_client, other_token) == 401
    assert _status(app_client, admin_token) == 204


def test_a_lookup_between_a_change_and_its_commit_is_forgotten_at_the_commit(clean_db, api_token, clock):
    token = api_token("ann")
    with session_scope() as s:  # its use recorded now, so the lookup below writes nothing
        assert auth.user_from_api_token(s, token) is not None
    token_cache.clear()
    changing = session_factory()()
    try:
        token_id = changing.scalars(select(ApiToken.id)).one()
        auth.revoke_api_token(changing, _user_id("ann"), token_id)  # flushed, not committed
        # Another request of this process looks the token up now: the revocation is not committed, so
        # the token is still good, and remembered as such.
        with session_scope() as s:
            assert auth.user_from_api_token(s, token) is not None
        assert token_cache._entries
        changing.commit()
    finally:
        changing.close()
    with session_scope() as s:
        assert auth.user_from_api_token(s, token) is None  # no TTL to wait: the commit forgot it
