"""Every admin route, from the app's route table: annotators get 403, anonymous visitors go to login."""

from __future__ import annotations

import re

from fastapi.routing import iter_route_contexts

from app.main import create_app
from app.orm import Role
from tests.conftest import csrf_from, login


def admin_routes() -> list[tuple[str, str]]:
    """(method, concrete path) for every route under /admin."""
    out = []
    # iter_route_contexts also walks included routers (app.routes only lists them as one entry each).
    for route in iter_route_contexts(create_app().routes):
        if (route.path or "").startswith("/admin"):
            path = str(route.path).replace("{fmt}", "json")
            path = re.sub(r"\{[^}]+\}", "1", path)
            out.extend((method, path) for method in sorted(set(route.methods or ()) - {"HEAD"}))
    return sorted(out)


ROUTES = admin_routes()


def test_the_route_table_holds_every_admin_page():
    paths = {p for _, p in ROUTES}
    # A sample of what the dashboard must serve; the other tests then cover whatever the table holds.
    for expected in (
        "/admin",
        "/admin/rounds",
        "/admin/rounds/1/progress",
        "/admin/models",
        "/admin/leaderboard",
        "/admin/leaderboard.json",
        "/admin/annotators",
        "/admin/users",
        "/admin/data/rankings",
        "/admin/data/flags",
        "/admin/quality",
        "/admin/import",
        "/admin/export",
    ):
        assert expected in paths
    assert sum(1 for m, _ in ROUTES if m == "POST") >= 12


def test_annotator_gets_403_everywhere(app_client, make_user):
    name, pw = make_user("ann", Role.annotator)
    login(app_client, name, pw)
    token = csrf_from(app_client.get("/login?next=/").text)
    wrong = []
    for method, path in ROUTES:
        if method == "GET":
            r = app_client.get(path, follow_redirects=False)
        else:
            # With a valid CSRF token: the role check, not CSRF, must refuse.
            r = app_client.post(path, data={"csrf_token": token}, follow_redirects=False)
        if r.status_code != 403:
            wrong.append((method, path, r.status_code))
    assert wrong == []


def test_anonymous_visitor_is_sent_to_login_everywhere(app_client):
    token = csrf_from(app_client.get("/login").text)
    wrong = []
    for method, path in ROUTES:
        if method == "GET":
            r = app_client.get(path, follow_redirects=False)
            ok = r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
            # htmx asks for a client-side redirect instead of swapping in the login page.
            hx = app_client.get(path, headers={"HX-Request": "true"}, follow_redirects=False)
            ok = ok and hx.status_code == 204 and hx.headers["HX-Redirect"] == f"/login?next={path}"
        else:
            bare = app_client.post(path, data={}, follow_redirects=False)  # no CSRF token: refused first
            r = app_client.post(path, data={"csrf_token": token}, follow_redirects=False)
            ok = bare.status_code == 403 and r.status_code == 303
            ok = ok and r.headers["location"] == f"/login?next={path}"
        if not ok:
            wrong.append((method, path, r.status_code))
    assert wrong == []
