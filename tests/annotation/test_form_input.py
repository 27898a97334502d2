"""The ranking page's forms with input a client controls (issue 12, part 3): numbers that str.isdigit
takes but int refuses, numbers too long to convert, control characters; each a 4xx naming the field,
nothing written. Also the admin rankings filter's dates."""

from __future__ import annotations

import re

import pytest

from app.db import session_scope
from app.orm import Role
from tests.app.test_security import stored
from tests.conftest import csrf_from, login
from tests.factories import make_comparison_set


def open_task(app_client, make_user) -> tuple[int, list[int], str]:
    with session_scope() as s:
        make_comparison_set(s, k=3, overlap=2)
    login(app_client, *make_user("ann"))
    page = app_client.get("/")
    aid = int(re.search(r'data-assignment="(\d+)"', page.text).group(1))
    ids = [int(i) for i in re.findall(r'data-id="(\d+)"', page.text)]
    return aid, ids, csrf_from(page.text)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rank", "{c}:²", "rank: must be a whole number"),
        ("rank", "{c}:" + "9" * 5000, "rank: must be a whole number"),
        ("rank", "{c}:\u0661", "rank: must be a whole number"),  # Arabic-Indic 1: int() takes it, we do not
        ("rank", "²:1", "rank: malformed field"),
        ("rank", "9" * 5000 + ":1", "rank: malformed field"),
        ("flag", "²:unsafe", "flag: malformed field"),
        ("flag", "9" * 5000 + ":unsafe", "flag: malformed field"),
        ("rationale", "a\x00b", "rationale: character 2 is a NUL"),
        ("rationale", "esc\x1b[0m", "rationale: character 4 is the control character U+001B"),
    ],
)
def test_a_hostile_ranking_form_field_is_a_4xx_naming_it(app_client, make_user, field, value, message):
    aid, ids, token = open_task(app_client, make_user)
    ranks = [f"{c}:{i + 1}" for i, c in enumerate(ids)]
    data: dict[str, object] = {"csrf_token": token, "rank": ranks}
    if field == "rank":
        data["rank"] = [value.format(c=ids[0]), *ranks[1:]]
    else:
        data[field] = value.format(c=ids[0])
    r = app_client.post(f"/tasks/{aid}/rank", data=data)
    assert r.status_code == 422, r.text[:300]
    assert message in r.text
    assert stored() == (0, 0)


@pytest.mark.parametrize(
    ("reason", "message"), [("why\x00", "reason: character 4 is a NUL"), ("\x07", "U+0007")]
)
def test_a_skip_reason_with_a_control_character_is_422_naming_it(app_client, make_user, reason, message):
    aid, _, token = open_task(app_client, make_user)
    r = app_client.post(f"/tasks/{aid}/skip", data={"csrf_token": token, "reason": reason})
    assert r.status_code == 422 and message in r.text
    assert stored() == (0, 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"until": "9999-12-31"}, "until must be a date before 9999-12-31"),
        ({"since": "9999-99-99"}, "since must be a date"),
        ({"annotator": "9" * 5000}, "annotator must be a whole number"),
        ({"flag": "unsafe\x00"}, "query parameter flag: character 7 is a NUL"),
    ],
)
def test_the_admin_rankings_filter_answers_a_4xx_to_values_out_of_range(
    app_client, make_user, params, message
):
    login(app_client, *make_user("root", Role.admin))
    r = app_client.get("/admin/data/rankings", params=params)
    assert r.status_code == 422 and message in r.text


def test_the_last_representable_day_before_the_limit_still_filters(app_client, make_user):
    login(app_client, *make_user("root", Role.admin))
    assert app_client.get("/admin/data/rankings", params={"until": "9999-12-30"}).status_code == 200
