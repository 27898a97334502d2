"""Texts in JSON bodies: a lone surrogate, a NUL or another control character is a 422 naming the field,
and nothing is written (issue 12, part 3)."""

from __future__ import annotations

import json

import pytest

from app.orm import Role
from tests.api.test_tasks_api import auth, next_task, seed, stored


def post_raw(client, url: str, body: str, headers: dict[str, str]):
    # Raw JSON text: a client library would refuse to encode a lone surrogate itself.
    return client.post(url, content=body.encode(), headers={**headers, "Content-Type": "application/json"})


def ranking_body(task: dict, rationale_json: str) -> str:
    ids = [c["id"] for c in task["candidates"]]
    tiers = json.dumps([[i] for i in ids])
    return f'{{"assignment_id": {task["assignment_id"]}, "tiers": {tiers}, "rationale": "{rationale_json}"}}'


@pytest.mark.parametrize(
    ("escaped", "problem"),
    [
        ("why \\ud83d", "lone surrogate (U+D83D)"),
        ("why \\udc00 not", "lone surrogate (U+DC00)"),
        ("a\\u0000b", "NUL (U+0000)"),
        ("bell\\u0007", "control character U+0007"),
    ],
)
def test_a_ranking_whose_rationale_breaks_the_rule_is_422_naming_it(app_client, api_token, escaped, problem):
    seed(1, k=3)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    r = post_raw(app_client, "/api/v1/rankings", ranking_body(task, escaped), h)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("rationale: ") and problem in detail
    assert stored() == (0, 0)
    # The task is still open: the same ranking with a sound rationale is taken.
    r = post_raw(app_client, "/api/v1/rankings", ranking_body(task, "why \\ud83d\\ude00 not"), h)
    assert r.status_code == 201, r.text
    assert r.json()["rationale"] == "why \U0001f600 not"


def test_line_breaks_tabs_and_u2028_are_text_not_errors(app_client, api_token):
    seed(1, k=2)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    r = post_raw(app_client, "/api/v1/rankings", ranking_body(task, "one\\r\\ntwo\\tthree\\u2028four"), h)
    assert r.status_code == 201, r.text
    assert r.json()["rationale"] == "one\r\ntwo\tthree\u2028four"


@pytest.mark.parametrize(("escaped", "problem"), [("\\ud83d", "lone surrogate"), ("no\\u0000pe", "NUL")])
def test_a_skip_reason_that_breaks_the_rule_is_422_naming_it(app_client, api_token, escaped, problem):
    seed(1, k=2)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    r = post_raw(app_client, f"/api/v1/tasks/{task['assignment_id']}/skip", f'{{"reason": "{escaped}"}}', h)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("reason: ") and problem in r.json()["detail"]
    assert stored() == (0, 0)


def test_a_bad_text_anywhere_in_a_body_is_named_by_its_path(app_client, api_token):
    seed(1, k=2)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    ids = [c["id"] for c in task["candidates"]]
    body = (
        f'{{"assignment_id": {task["assignment_id"]}, "tiers": [[{ids[0]}], [{ids[1]}]], '
        f'"flags": {{"{ids[0]}": ["unsafe", "\\u001b[31m"]}}}}'
    )
    r = post_raw(app_client, "/api/v1/rankings", body, h)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"flags.{ids[0]}.1: ") and "U+001B" in r.json()["detail"]
    head = f'{{"assignment_id": {task["assignment_id"]}, "tiers": [[{ids[0]}], [{ids[1]}]]'
    body = head + ', "flags": {"\\ud800": []}}'
    r = post_raw(app_client, "/api/v1/rankings", body, h)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("flags.'\\ud800' (a key): ")
    assert stored() == (0, 0)


def test_flag_keys_equal_after_trimming_are_refused_not_merged_silently(app_client, api_token):
    seed(1, k=2)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    a, b = (c["id"] for c in task["candidates"])
    body = {
        "assignment_id": task["assignment_id"],
        "tiers": [[a], [b]],
        "flags": {str(a): ["unsafe"], f" {a} ": ["incorrect"]},
    }
    r = app_client.post("/api/v1/rankings", json=body, headers=h)
    assert r.status_code == 422
    assert r.json()["detail"] == f"flags: candidate {a} is named by more than one key"
    assert stored() == (0, 0)
    # One key, trimmed, is fine and stored under the candidate's id.
    body["flags"] = {f" {a} ": ["unsafe", "incorrect"]}
    r = app_client.post("/api/v1/rankings", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["flags"] == {str(a): ["incorrect", "unsafe"]}


@pytest.mark.parametrize("key", ["²", "1" * 5000, "-1", "0x1"])
def test_flag_keys_that_are_no_candidate_id_are_422(app_client, api_token, key):
    seed(1, k=2)
    h = auth(api_token("ann"))
    task = next_task(app_client, h)
    a, b = (c["id"] for c in task["candidates"])
    body = {"assignment_id": task["assignment_id"], "tiers": [[a], [b]], "flags": {key: ["unsafe"]}}
    r = app_client.post("/api/v1/rankings", json=body, headers=h)
    assert r.status_code == 422 and "names no candidate of this task" in r.json()["detail"]


def test_a_query_parameter_with_a_nul_is_422_naming_it(app_client, api_token):
    h = auth(api_token("boss", Role.admin))
    r = app_client.get("/api/v1/exports/pairs.jsonl", params={"prompt_set": "a\x00b"}, headers=h)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("query parameter prompt_set: ")
