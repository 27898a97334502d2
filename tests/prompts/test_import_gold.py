"""Importing ranked groups as gold (kind `gold`): each becomes an open gold set with its ranking as the known
one, no ranking row; through the service, the API, the import page and the CLI."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app
from app.db import session_scope
from app.errors import Invalid
from app.orm import ComparisonSet, Ranking, Role, SetStatus
from app.prompts.schemas import ImportKind
from tests.conftest import csrf_from, login
from tests.prompts.test_import_api import admin_headers
from tests.prompts.test_imports import candidate_texts, jsonl, run

GROUPS = (
    {"prompt": "Name a colour", "completions": ["red", "blue", "green"], "ranking": [[2], [0, 1]]},
    {"prompt": "Name a fruit", "completions": ["apple", "pear"], "ranking": [[1], [0]]},
)


def _gold_texts(session, cset: ComparisonSet) -> list[set[str]]:
    return [set(candidate_texts(session, tier)) for tier in cset.gold_tiers or []]


def test_ranked_groups_become_open_gold_sets_and_a_reimport_adds_none(db):
    summary = run(db, jsonl(*GROUPS), ImportKind.gold)
    assert (summary.sets, summary.gold, summary.rankings) == (2, 2, 0)
    sets = db.scalars(select(ComparisonSet).order_by(ComparisonSet.id)).all()
    assert [s.status for s in sets] == [SetStatus.open, SetStatus.open]
    assert [_gold_texts(db, s) for s in sets] == [[{"green"}, {"red", "blue"}], [{"pear"}, {"apple"}]]
    assert db.scalars(select(Ranking)).all() == []  # the known ranking is no one's ranking
    again = run(db, jsonl(*GROUPS), ImportKind.gold)
    assert (again.sets, again.gold, again.duplicates) == (0, 0, 2)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"prompt": "p", "completions": ["a", "b"]}, "needs its known ranking"),
        ({"prompt": "p", "completions": ["a", "b"], "ranking": [[0]]}, "line 1"),
    ],
)
def test_a_gold_line_without_a_full_ranking_is_refused(db, line, message):
    with pytest.raises(Invalid, match=message):
        run(db, jsonl(line), ImportKind.gold)
    assert db.scalars(select(ComparisonSet)).all() == []


def test_the_api_the_import_page_and_the_cli_import_gold(app_client, make_user, api_token, tmp_path):
    r = app_client.post(
        "/api/v1/imports",
        headers=admin_headers(api_token),
        files={"file": ("gold.jsonl", jsonl(GROUPS[0]), "application/jsonl")},
        data={"kind": "gold"},
    )
    assert r.status_code == 201 and r.json()["gold"] == 1 and r.json()["rankings"] == 0, r.text

    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    page = app_client.get("/admin/import")
    assert '<option value="gold"' in page.text
    r = app_client.post(
        "/admin/import",
        files={"file": ("gold.jsonl", jsonl(GROUPS[1]))},
        data={"kind": "gold", "csrf_token": csrf_from(page.text)},
    )
    assert r.status_code == 200 and 'data-summary="gold">1<' in r.text, r.text

    f = tmp_path / "more.jsonl"
    f.write_bytes(jsonl({"prompt": "Name a tree", "completions": ["oak", "fir"], "ranking": [[0], [1]]}))
    result = CliRunner().invoke(app, ["import", str(f), "--kind", "gold"])
    assert result.exit_code == 0, result.output
    assert re.search(r"gold\s*│\s*1\b", result.output)
    with session_scope() as s:
        gold = s.scalars(select(ComparisonSet).where(ComparisonSet.gold_tiers.is_not(None))).all()
        assert len(gold) == 3 and s.scalars(select(Ranking)).all() == []
