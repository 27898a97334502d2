"""app.text's rule: the rule itself, and that it stands in front of every route, so that no field of
any form, JSON body or query string can reach a service or PostgreSQL with a lone surrogate, a NUL or
another control character (issue 12, part 3)."""

from __future__ import annotations

import pytest
from fastapi.routing import iter_route_contexts

from app.errors import Invalid
from app.orm import Role
from app.text import check_name, check_text, is_blank, strings, text_problem
from tests.app.test_security import concrete, stored, unsafe_routes
from tests.conftest import csrf_from, login


@pytest.mark.parametrize(
    ("value", "kwargs", "problem"),
    [
        ("plain", {}, ""),
        ("tab\tnew\nline\r\nand\u2028separators\u2029", {}, ""),
        ("emoji \U0001f600 and NBSP\u00a0", {"one_line": True}, ""),
        ("a\ud83d", {}, "character 2 is a lone surrogate (U+D83D), not valid Unicode"),
        ("\x00", {}, "character 1 is a NUL (U+0000), a control character"),
        ("del\x7f", {}, "character 4 is the control character U+007F"),
        ("c1\x85", {}, "character 3 is the control character U+0085"),
        ("form\x0cfeed", {}, "character 5 is the control character U+000C"),
        ("a\nb", {"one_line": True}, "character 2 is a line break or tab (U+000A); this field is one line"),
        (
            "a\u2028b",
            {"one_line": True},
            "character 2 is a line break or tab (U+2028); this field is one line",
        ),
        (" \u200b\ufeff\u3000", {"blank_ok": False}, "must not be blank"),
        ("x" * 11, {"max_chars": 10}, "is longer than 10 characters (11)"),
    ],
)
def test_the_rule(value, kwargs, problem):
    assert text_problem(value, **kwargs) == problem


def test_the_checks_name_the_field():
    with pytest.raises(Invalid, match=r"^rationale: character 1 is a NUL"):
        check_text("\x00", "rationale")
    assert check_name("  my set  ", "prompt_set", default="imported") == "my set"
    assert check_name("   ", "prompt_set", default="imported") == "imported"
    assert is_blank("\u200b \t") and not is_blank(" a ")


def test_every_string_of_a_json_value_is_visited_with_its_path():
    found = dict(strings({"a": ["x", {"b": "y"}], "\x00": "z"}))
    assert found == {
        "a (a key)": "a",
        "a.0": "x",
        "a.1.b (a key)": "b",
        "a.1.b": "y",
        "'\\x00' (a key)": "\x00",
        "'\\x00'": "z",
    }
    deep: object = "leaf"
    for _ in range(5000):
        deep = [deep]
    assert next(iter(strings(deep)))[1] == "leaf"  # no recursion limit


def test_every_state_changing_route_refuses_a_form_field_or_a_json_text_that_breaks_the_rule(
    app_client, make_user, api_token
):
    routes = unsafe_routes(app_client.app)
    assert {"/login", "/api/v1/rankings", "/tasks/{assignment_id}/skip", "/admin/import"} <= {
        p for _, p in routes
    }
    bearer = {"Authorization": f"Bearer {api_token('bot', Role.admin)}"}
    login(app_client, *make_user("root", Role.admin))
    token = csrf_from(app_client.get("/").text)
    for method, path in routes:
        if path == "/logout":
            continue  # ends the session the loop uses; it reads no field
        url = concrete(path)
        r = app_client.request(method, url, data={"probe": "a\x00b"}, headers={"X-CSRF-Token": token})
        assert r.status_code == 422 and "probe: character 2 is a NUL" in r.text, (method, path, r.text[:200])
        r = app_client.request(
            method,
            url,
            content=b'{"x": {"probe": "\\ud83d"}}',
            headers={**bearer, "Content-Type": "application/json"},
        )
        assert r.status_code == 422, (method, path, r.text[:200])
        # JSON for the API, the error page for pages: the same words.
        assert "x.probe: character 1 is a lone surrogate" in r.text, (method, path)
    assert stored() == (0, 0)


def test_every_page_and_api_read_refuses_a_query_parameter_that_breaks_the_rule(app_client, make_user):
    login(app_client, *make_user("root", Role.admin))
    paths = set()
    for route in iter_route_contexts(app_client.app.routes):
        if "GET" in (getattr(route, "methods", None) or ()) and not route.path.startswith(
            ("/docs", "/redoc", "/static")
        ):
            paths.add(concrete(str(route.path).replace("{fmt}", "json")))
    assert {"/", "/admin/data/rankings", "/api/v1/exports/pairs.jsonl"} <= paths
    paths.discard("/openapi.json")  # FastAPI's own, outside the app's dependencies; reads no parameter
    for path in sorted(paths):
        r = app_client.get(path, params={"q": "x\x1b"})
        assert r.status_code == 422 and "query parameter q: character 2" in r.text, (path, r.status_code)
