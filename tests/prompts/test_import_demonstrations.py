"""Demonstrations arrive through the same import entry points as every other kind of file."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.config import get_settings
from app.errors import Invalid
from app.orm import Candidate, ModelVersion, Role
from app.prompts import service
from app.prompts.schemas import ImportKind


def _jsonl(rows: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def test_demonstrations_import_as_candidates_of_a_human_source(db):
    data = _jsonl(
        [
            {"prompt": "Say hi", "completion": "Hi!"},
            {"prompt": "Say hi", "completion": "Hello there."},
            {"prompt": "Count to 3", "completion": "1, 2, 3"},
        ]
    )
    summary = service.import_file(db, get_settings(), data, ImportKind.demonstrations, "sft", "demos.jsonl")
    assert (summary.records, summary.prompts, summary.candidates, summary.sets) == (3, 2, 3, 0)
    version = db.scalars(select(ModelVersion).join(Candidate).limit(1)).one()
    assert version.config.get("human") is True
    again = service.import_file(db, get_settings(), data, ImportKind.demonstrations, "sft", "demos.jsonl")
    assert again.candidates == 0 and again.duplicates == 3


def test_a_malformed_demonstration_line_imports_nothing(db):
    before = db.scalar(select(func.count()).select_from(Candidate))
    data = _jsonl([{"prompt": "ok", "completion": "fine"}]) + b'\n{"prompt": "no completion"}'
    with pytest.raises(Invalid, match="line 2"):
        service.import_file(db, get_settings(), data, ImportKind.demonstrations, None, "bad.jsonl")
    assert db.scalar(select(func.count()).select_from(Candidate)) == before


def test_api_accepts_demonstrations(app_client, api_token):
    token = api_token("boss", Role.admin)
    r = app_client.post(
        "/api/v1/imports",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("d.jsonl", _jsonl([{"prompt": "p", "completion": "c"}]), "application/jsonl")},
        data={"kind": "demonstrations"},
    )
    assert r.status_code in (200, 201), r.text
    assert r.json()["candidates"] == 1
