"""On an empty database every admin page, and the annotator's page, says what fills it and how.

An empty state is an element marked `data-empty` whose text names what fills the page and where to make it
happen (a link, a command or a setting). The pages come from the app's route table (tests/pages.py).
"""

from __future__ import annotations

import re
from html import unescape

from app.orm import Role
from tests.conftest import login
from tests.pages import admin_page_paths, fill

# Pages that cannot be empty, and why.
NEVER_EMPTY = {
    "/admin/users": "lists the admin looking at it",
    "/admin/import": "a form",
    "/admin/rounds/{round_id}": "exists only for a round",
}
# What each empty page must point to (the same links and commands a new admin needs).
EXPECTED = {
    "/admin": ["/admin/import", "rank"],
    "/admin/rounds": ["rankloop worker"],
    "/admin/models": ["/admin/rounds"],
    "/admin/leaderboard": ["two different versions"],
    "/admin/annotators": ["/admin/users"],
    "/admin/annotators/{user_id}": ["no rankings"],
    "/admin/users/{user_id}": ["no api tokens"],
    "/admin/data": ["/admin/import"],
    "/admin/data/rankings": ["/admin/import"],
    "/admin/data/flags": ["flag"],
    "/admin/quality": ["two annotators"],
    "/admin/gold": ["/admin/import", "--kind gold", "/api/v1/comparison-sets"],
    "/admin/quality/consensus": ["RANKLOOP_OVERLAP"],
    "/admin/export": ["/admin/import"],
    "/admin/generate": ["/admin/import"],
    "/admin/models/compare": ["/admin/rounds"],
    "/admin/projects": ["/admin/import", "/admin/rounds", "?project="],
    "/admin/projects/{project_id}": ["/api/v1/imports?project=", "/api/v1/rounds?project="],
}


def empty_states(html: str) -> list[str]:
    """The text (and link targets) of each element marked data-empty, tags stripped."""
    found = []
    for match in re.finditer(r"<(\w+)[^>]*\bdata-empty\b[^>]*>(.*?)</\1>", html, re.S):
        inner = match.group(2)
        links = " ".join(re.findall(r'href="([^"]+)"', inner))
        found.append(" ".join(unescape(re.sub(r"<[^>]+>", " ", inner)).split()) + " " + links)
    return found


def test_every_admin_page_says_what_fills_it_on_an_empty_database(app_client, make_user):
    name, pw = make_user("boss", Role.admin)
    make_user("newcomer", Role.annotator)
    login(app_client, name, pw)
    users = app_client.get("/admin/users").text
    newcomer = re.search(r'data-user="(\d+)">\s*<td><a[^>]*>newcomer<', users)
    assert newcomer is not None
    # A fresh server has one project, the default one, where data goes until there are others.
    project = re.search(r'data-project="(\d+)"', app_client.get("/admin/projects").text)
    assert project is not None
    values = {"user_id": newcomer.group(1), "project_id": project.group(1)}
    missing = []
    for template in admin_page_paths():
        if template in NEVER_EMPTY:
            continue
        assert template in EXPECTED, f"{template}: a new page needs its empty state listed here"
        resp = app_client.get(fill(template, values))
        assert resp.status_code == 200, template
        states = empty_states(resp.text)
        text = " ".join(states).lower()
        if not states or not all(word.lower() in text for word in EXPECTED[template]):
            missing.append(f"{template}: {states}")
    assert missing == []
    # No figure stands in for "nothing measured": with no rankings the bias table claims no 0-1 interval.
    assert "0.000 \N{EN DASH} 1.000" not in app_client.get("/admin/quality").text


def test_the_annotator_page_with_no_work_says_where_work_comes_from(app_client, make_user):
    name, pw = make_user("ann", Role.annotator)
    login(app_client, name, pw)
    states = empty_states(app_client.get("/").text)
    assert states and "candidates" in states[0].lower() and "admin" in states[0].lower()
