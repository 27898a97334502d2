"""Imports over HTTP: the API (summary, 422 naming the line, 401/403, 413 on oversized uploads) and the
admin import form and pages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import Settings, get_settings
from app.orm import Role
from tests.conftest import csrf_from, login
from tests.prompts.test_imports import committed_counts, jsonl


def admin_headers(api_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}


def test_api_import_returns_the_summary(app_client, api_token):
    data = jsonl({"prompt": "p", "completions": ["a", "b", "c"], "ranking": [[1], [0], [2]]})
    r = app_client.post(
        "/api/v1/imports",
        headers=admin_headers(api_token),
        files={"file": ("groups.jsonl", data, "application/jsonl")},
        data={"kind": "ranked-groups", "prompt_set": "api-set"},
    )
    assert r.status_code == 201, r.text
    assert r.json() == {
        "prompt_set": "api-set", "records": 1, "prompts": 1, "candidates": 3, "sets": 1, "rankings": 1,
        "duplicates": 0, "prompt_set_id": r.json()["prompt_set_id"], "waiting_for_candidates": 0,
        "conflicts": 0, "left_out": 0, "gold": 0,
    }  # fmt: skip
    assert committed_counts()["Ranking"] == 1


def test_api_import_of_a_malformed_file_is_422_with_the_line_and_writes_nothing(app_client, api_token):
    data = jsonl({"prompt": "ok", "chosen": "a", "rejected": "b"}, {"prompt": "bad", "chosen": "a"})
    r = app_client.post(
        "/api/v1/imports",
        headers=admin_headers(api_token),
        files={"file": ("pairs.jsonl", data)},
        data={"kind": "pairs"},
    )
    assert r.status_code == 422
    assert "line 2: rejected: Field required" in r.json()["detail"]
    assert committed_counts()["Prompt"] == 0


def test_api_import_needs_an_admin_and_a_known_kind(app_client, api_token):
    files = {"file": ("p.jsonl", jsonl({"prompt": "p"}))}

    def post(headers: dict[str, str], **fields: str):
        return app_client.post("/api/v1/imports", headers=headers, files=files, data=fields)

    assert post({"Authorization": "Bearer rl_not-a-token"}, kind="prompts").status_code == 401
    assert (
        post({"Authorization": f"Bearer {api_token('ann', Role.annotator)}"}, kind="prompts").status_code
        == 403
    )
    admin = admin_headers(api_token)
    r = post(admin, kind="essays")
    assert r.status_code == 422 and "kind must be one of" in r.json()["detail"]
    r = post(admin, kind="prompts", prompt_set="a\x00")
    assert r.status_code == 422 and "prompt_set: character 2 is a NUL" in r.json()["detail"]
    assert committed_counts()["Prompt"] == 0


@pytest.fixture
def small_upload_limit(app_client) -> Iterator[int]:
    limit = 2000
    app_client.app.dependency_overrides[get_settings] = lambda: Settings(max_upload_bytes=limit)
    yield limit
    app_client.app.dependency_overrides.clear()


def test_api_upload_over_the_limit_is_413_by_content_length(app_client, api_token, small_upload_limit):
    headers = admin_headers(api_token)
    big = jsonl(*({"prompt": f"prompt {i} " + "x" * 50} for i in range(200)))
    assert len(big) > small_upload_limit
    r = app_client.post(
        "/api/v1/imports", headers=headers, files={"file": ("p.jsonl", big)}, data={"kind": "prompts"}
    )
    assert r.status_code == 413
    assert "upload too large" in r.json()["detail"] and "2,000 bytes" in r.json()["detail"]
    small = jsonl({"prompt": "fits"})
    ok = app_client.post(
        "/api/v1/imports", headers=headers, files={"file": ("p.jsonl", small)}, data={"kind": "prompts"}
    )
    assert ok.status_code == 201
    assert committed_counts()["Prompt"] == 1


def test_api_upload_over_the_limit_is_413_while_reading_a_chunked_body(
    app_client, api_token, small_upload_limit
):
    boundary = "rankloopboundary"
    payload = b"x" * (small_upload_limit + 100_000)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nprompts\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jsonl"\r\n\r\n'
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    headers = {**admin_headers(api_token), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = app_client.post("/api/v1/imports", headers=headers, content=chunks())
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413
    assert "upload too large" in r.json()["detail"]


def test_admin_import_form_imports_and_shows_errors(app_client, make_user):
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    page = app_client.get("/admin/import")
    assert page.status_code == 200 and 'name="kind"' in page.text
    token = csrf_from(page.text)
    # A plain form post (token in the form) ...
    r = app_client.post(
        "/admin/import",
        files={"file": ("pairs.jsonl", jsonl({"prompt": "<b>p</b>", "chosen": "a", "rejected": "b"}))},
        data={"kind": "pairs", "prompt_set": "web", "csrf_token": token},
    )
    assert r.status_code == 200, r.text
    assert 'data-summary="rankings">1<' in r.text and "<strong>web</strong>" in r.text
    # ... and the htmx one (token in the header) answer with the summary or the error, line included.
    r = app_client.post(
        "/admin/import",
        headers={"HX-Request": "true", "X-CSRF-Token": token},
        files={"file": ("bad.jsonl", b'{"prompt": "x"}\n{"prompt": "<script>"}\n{"oops"\n')},
        data={"kind": "prompts"},
    )
    assert r.status_code == 422
    assert "line 3: not valid JSON" in r.text and "Nothing was imported" in r.text
    assert "<html" not in r.text
    assert committed_counts()["Prompt"] == 1


def test_admin_pages_are_forbidden_to_annotators(app_client, make_user):
    name, pw = make_user("ann", Role.annotator)
    login(app_client, name, pw)
    for url in ("/admin", "/admin/import", "/admin/export"):
        assert app_client.get(url).status_code == 403, url
    # A valid CSRF token, so that the refusal is the role's.
    token = csrf_from(app_client.get("/admin").text)
    r = app_client.post(
        "/admin/import",
        headers={"X-CSRF-Token": token},
        files={"file": ("p.jsonl", jsonl({"prompt": "p"}))},
        data={"kind": "prompts"},
    )
    assert r.status_code == 403
    assert committed_counts()["Prompt"] == 0


def test_admin_index_counts_the_data(app_client, make_user, api_token):
    name, pw = make_user("root", Role.admin)
    data = jsonl(
        {"prompt": "a", "completions": ["1", "2"], "ranking": [[0], [1]]},
        {"prompt": "b", "completions": ["1", "2"]},
    )
    app_client.post(
        "/api/v1/imports",
        headers=admin_headers(api_token),
        files={"file": ("g.jsonl", data)},
        data={"kind": "ranked-groups"},
    )
    login(app_client, name, pw)
    page = app_client.get("/admin").text
    assert 'data-count="prompts">2<' in page
    assert 'data-count="rankings">1<' in page
    assert 'data-count="users">2<' in page  # root and boss; the imported annotator cannot log in
    assert 'href="/admin/import"' in page and 'href="/admin/export"' in page
