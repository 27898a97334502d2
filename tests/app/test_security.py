"""Hostile input and forged requests: CSRF on every state-changing route, login throttling per address,
annotators kept out of each other's work on the pages too, values the database would refuse, and the
security headers on every answer. (Upload limits, malformed imports, session fixation and the API side
of cross-annotator access are in test_imports, test_body_limit, test_auth and test_tasks_api.)"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.orm import Ranking, Role, Skip
from tests.conftest import csrf_from, login
from tests.factories import make_comparison_set

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
BIG_ID = 2**31  # one past Postgres' integer


def unsafe_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every state-changing route the app serves, pages and API alike."""
    found = set()
    for route in app.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:
            for method in (getattr(ctx, "methods", None) or set()) & UNSAFE:
                found.add((method, ctx.path))
    return sorted(found)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def stored() -> tuple[int, int]:
    with session_scope() as s:
        return (
            s.scalar(select(func.count()).select_from(Ranking)) or 0,
            s.scalar(select(func.count()).select_from(Skip)) or 0,
        )


def test_every_state_changing_route_refuses_a_cookie_request_without_the_csrf_token(app_client, make_user):
    routes = unsafe_routes(app_client.app)
    paths = {p for _, p in routes}
    # The enumeration sees pages and API routes (a sanity check that it did not come back empty).
    assert {"/login", "/logout", "/api/v1/rankings", "/admin/import"} <= paths, paths
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    token = csrf_from(app_client.get("/").text)
    for method, path in routes:
        url = concrete(path)
        for headers in ({}, {"X-CSRF-Token": "forged-" + token[:8]}):
            r = app_client.request(method, url, headers=headers, data={"x": "1"}, follow_redirects=False)
            assert r.status_code == 403, (method, path, headers, r.status_code, r.text[:200])
            assert "CSRF" in r.text
        # The real token gets past the check (whatever the route then makes of the empty form).
        r = app_client.request(method, url, headers={"X-CSRF-Token": token}, follow_redirects=False)
        assert not (r.status_code == 403 and "CSRF" in r.text), (method, path)
        if path == "/logout":
            login(app_client, name, pw)
            token = csrf_from(app_client.get("/").text)


def test_failed_logins_are_throttled_per_address_across_usernames(app_client, make_user):
    name, pw = make_user("real-user")
    for i in range(5):
        page = app_client.get("/login")
        r = app_client.post(
            "/login",
            data={"username": f"guess-{i}", "password": "x" * 10, "csrf_token": csrf_from(page.text)},
        )
        assert r.status_code == 401
    # Spraying many usernames from one address trips the address limit: even a right password waits.
    page = app_client.get("/login")
    r = app_client.post("/login", data={"username": name, "password": pw, "csrf_token": csrf_from(page.text)})
    assert r.status_code == 429 and r.headers["retry-after"]


def test_an_annotator_cannot_rank_or_skip_another_annotators_task_from_the_pages(app_client, make_user):
    with session_scope() as s:
        make_comparison_set(s, k=3, overlap=2)
    owner, intruder = make_user("owner"), make_user("intruder")
    login(app_client, *owner)
    page = app_client.get("/")
    aid = int(re.search(r'data-assignment="(\d+)"', page.text).group(1))
    ranks = [f"{cid}:{i + 1}" for i, cid in enumerate(re.findall(r'data-id="(\d+)"', page.text))]
    assert ranks
    app_client.cookies.clear()
    login(app_client, *intruder)
    token = csrf_from(app_client.get("/").text)
    r = app_client.post(f"/tasks/{aid}/rank", data={"rank": ranks, "csrf_token": token})
    assert r.status_code == 404 and "no such task" in r.text
    r = app_client.post(f"/tasks/{aid}/skip", data={"reason": "mine now", "csrf_token": token})
    assert r.status_code == 404
    assert stored() == (0, 0)


@pytest.mark.parametrize(
    ("method", "path", "body", "role"),
    [
        ("GET", f"/api/v1/tasks/{BIG_ID}", None, Role.annotator),
        ("POST", "/api/v1/rankings", {"assignment_id": BIG_ID, "tiers": [[1], [2]]}, Role.annotator),
        ("POST", f"/api/v1/tasks/{BIG_ID}/skip", {"reason": "x"}, Role.annotator),
        ("GET", f"/api/v1/rounds/{BIG_ID}", None, Role.admin),
        ("POST", f"/api/v1/model-versions/{BIG_ID}/promote", None, Role.admin),
    ],
)
def test_ids_beyond_the_database_integer_are_a_4xx_not_a_500(app_client, api_token, method, path, body, role):
    headers = {"Authorization": f"Bearer {api_token('someone', role)}"}
    r = app_client.request(method, path, headers=headers, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert stored() == (0, 0)


def test_out_of_range_id_on_a_page_gets_the_error_page(app_client, make_user):
    login(app_client, *make_user("ann"))
    token = csrf_from(app_client.get("/").text)
    r = app_client.post(f"/tasks/{BIG_ID}/skip", data={"reason": "x", "csrf_token": token})
    assert r.status_code in (404, 422) and "<html" in r.text.lower()


def test_every_answer_carries_the_security_headers(app_client, make_user, api_token):
    token = api_token("bot")
    answers = {
        "login page": app_client.get("/login"),
        "redirect": app_client.get("/", follow_redirects=False),
        "api": app_client.get("/api/v1/tasks/next", headers={"Authorization": f"Bearer {token}"}),
        "api 401": app_client.get("/api/v1/tasks/next"),
        "static": app_client.get("/static/js/rank.js"),
        "not found": app_client.get("/no/such/page"),
        "too large": app_client.post(
            "/login", content=b"x", headers={"content-length": str(10**12), "content-type": "text/plain"}
        ),
    }
    for what, r in answers.items():
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, (what, r.status_code)
        assert "unsafe-eval" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
        assert r.headers["x-content-type-options"] == "nosniff", what
        assert r.headers["x-frame-options"] == "DENY", what
        assert r.headers["referrer-policy"] == "same-origin", what
    assert answers["too large"].status_code == 413


def test_templates_have_no_inline_script_or_event_handler_the_policy_would_block():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    for path in root.rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"inline <script> in {path}"
        assert not re.search(r"\son[a-z]+\s*=", text), f"inline event handler in {path}"
        assert "hx-on" not in text and "javascript:" not in text, path
