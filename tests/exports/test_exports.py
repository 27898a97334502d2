"""Exports: raw rankings and TRL pairs, their exclusions, filters, batching, the API and the admin page."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.errors import Invalid, NotFound
from app.exports import service
from app.orm import Candidate, ComparisonSet, Prompt, Ranking, Role, User
from app.prompts import service as imports
from app.prompts.schemas import ImportKind
from tests.conftest import csrf_from, login

GROUPS: list[dict[str, Any]] = [
    # A tie in the middle tier.
    {"prompt": "tie", "completions": ["A", "B", "C", "D"], "ranking": [[0], [1, 2], [3]], "tags": ["t1"]},
    {"prompt": "plain", "completions": ["P", "Q", "R"], "ranking": [[2], [0], [1]]},
    {"prompt": "to drop", "completions": ["x1", "x2"], "ranking": [[0], [1]]},
    {"prompt": "all bad", "completions": ["y1", "y2"], "ranking": [[1], [0]]},
    {"prompt": "hidden", "completions": ["H", "K", "L"], "ranking": [[0], [1], [2]], "model": "other-model"},
    {"prompt": "open", "completions": ["o1", "o2"]},
]


def write_import(records: list[dict[str, Any]], prompt_set: str, kind: ImportKind = ImportKind.ranked_groups):
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    with session_scope() as session:
        return imports.import_file(session, get_settings(), data, kind, prompt_set)


def ranking_of(session, prompt_text: str) -> Ranking:
    return session.scalars(
        select(Ranking)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(Prompt.text == prompt_text)
    ).one()


@pytest.fixture
def exported_data(clean_db):
    """The groups above, imported; then one ranking dropped, one all-bad and one candidate hidden."""
    write_import(GROUPS, "main")
    write_import([{"prompt": "elsewhere", "chosen": "good", "rejected": "bad"}], "second", ImportKind.pairs)
    with session_scope() as session:
        ranking_of(session, "to drop").dropped = True
        ranking_of(session, "all bad").all_bad = True
        session.scalars(select(Candidate).where(Candidate.text == "K")).one().hidden = True


def export(kind: str, **filters: Any) -> list[dict[str, Any]]:
    with session_scope() as session:
        fn = service.rankings_export if kind == "rankings" else service.pairs_export
        lines = fn(session, **filters)
    return [json.loads(line) for line in lines]


def expected_pairs(
    ranking_texts: list[list[str]], hidden: frozenset[str] = frozenset()
) -> set[tuple[str, str, int]]:
    """Independent of the code under test: every (better, worse, tier distance) across tiers."""
    out = set()
    for (i, upper), (j, lower) in itertools.combinations(enumerate(ranking_texts), 2):
        out |= {(a, b, j - i) for a in upper for b in lower if a not in hidden and b not in hidden}
    return out


def test_rankings_export_has_one_full_line_per_live_ranking(exported_data):
    lines = export("rankings")
    # 5 ranked groups + 1 pair, minus the dropped one; the open group has no ranking.
    assert sorted(line["prompt"]["text"] for line in lines) == [
        "all bad",
        "elsewhere",
        "hidden",
        "plain",
        "tie",
    ]
    assert [line["ranking_id"] for line in lines] == sorted(line["ranking_id"] for line in lines)
    with session_scope() as session:
        imported_id = session.scalars(select(User.id).where(User.username == "imported")).one()
    tie = next(line for line in lines if line["prompt"]["text"] == "tie")
    assert tie["prompt"]["tags"] == ["t1"] and tie["prompt"]["prompt_set"] == "main"
    by_id = {c["id"]: c for c in tie["candidates"]}
    assert [c["text"] for c in tie["candidates"]] == ["A", "B", "C", "D"]
    assert [{by_id[i]["text"] for i in tier} for tier in tie["tiers"]] == [{"A"}, {"B", "C"}, {"D"}]
    assert {c["model_version"] for c in tie["candidates"]} == {"imported"}
    assert (tie["annotator_id"], tie["source"], tie["all_bad"], tie["flags"], tie["rationale"]) == (
        imported_id, "import", False, {}, ""
    )  # fmt: skip
    assert sorted(tie["display_order"]) == sorted(by_id)
    assert tie["seconds_spent"] is None
    assert dt.datetime.fromisoformat(tie["created_at"]).tzinfo is not None
    hidden = next(line for line in lines if line["prompt"]["text"] == "hidden")
    assert {c["text"]: c["hidden"] for c in hidden["candidates"]} == {"H": False, "K": True, "L": False}
    assert {c["model_version"] for c in hidden["candidates"]} == {"other-model"}
    assert next(line for line in lines if line["prompt"]["text"] == "all bad")["all_bad"] is True


def test_pairs_export_expands_tiers_and_leaves_out_ties_all_bad_dropped_and_hidden(exported_data):
    lines = export("pairs")
    got = {(p["chosen"], p["rejected"], p["margin"]) for p in lines}
    assert len(got) == len(lines)
    expected = (
        expected_pairs([["A"], ["B", "C"], ["D"]])
        | expected_pairs([["R"], ["P"], ["Q"]])
        | expected_pairs([["H"], ["K"], ["L"]], hidden=frozenset({"K"}))
        | expected_pairs([["good"], ["bad"]])
    )
    assert got == expected
    assert ("B", "C", 0) not in got and ("C", "B", 0) not in got
    tie_pair = next(p for p in lines if (p["chosen"], p["rejected"]) == ("A", "D"))
    assert tie_pair["prompt"] == "tie" and tie_pair["margin"] == 2
    with session_scope() as session:
        a = session.scalars(select(Candidate).where(Candidate.text == "A")).one()
        ranking = ranking_of(session, "tie")
        assert (tie_pair["chosen_id"], tie_pair["prompt_id"]) == (a.id, a.prompt_id)
        assert (tie_pair["ranking_id"], tie_pair["set_id"]) == (ranking.id, ranking.set_id)


def test_filters_by_prompt_set_and_date(exported_data):
    assert [p["prompt"] for p in export("pairs", prompt_set="second")] == ["elsewhere"]
    assert {r["prompt"]["prompt_set"] for r in export("rankings", prompt_set="main")} == {"main"}
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    assert export("rankings", since=tomorrow) == []
    assert len(export("rankings", since=yesterday)) == 5
    with pytest.raises(NotFound, match="no prompt set named 'nope'"):
        export("pairs", prompt_set="nope")
    with pytest.raises(Invalid, match="ISO date"):
        export("pairs", since="last tuesday")


def test_export_reads_in_batches_without_losing_or_repeating_lines(clean_db):
    write_import(
        [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(7)], "s", ImportKind.pairs
    )
    with session_scope() as session:
        lines = [json.loads(x) for x in service.rankings_export(session, batch_size=2)]
        pairs = [json.loads(x) for x in service.pairs_export(session, batch_size=3)]
    assert [r["prompt"]["text"] for r in lines] == [f"p{i}" for i in range(7)]
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(f"c{i}", f"r{i}") for i in range(7)]


def test_api_streams_jsonl_to_admins_only(exported_data, app_client, api_token):
    admin = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    r = app_client.get("/api/v1/exports/pairs.jsonl", headers=admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert 'filename="pairs.jsonl"' in r.headers["content-disposition"]
    assert [json.loads(x) for x in r.text.splitlines()] == export("pairs")
    r = app_client.get("/api/v1/exports/rankings.jsonl", headers=admin, params={"prompt_set": "second"})
    assert [json.loads(x)["prompt"]["text"] for x in r.text.splitlines()] == ["elsewhere"]
    r = app_client.get("/api/v1/exports/rankings.jsonl", headers=admin, params={"prompt_set": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = app_client.get("/api/v1/exports/rankings.jsonl", headers=admin, params={"since": "soon"})
    assert r.status_code == 422
    annotator = {"Authorization": f"Bearer {api_token('ann', Role.annotator)}"}
    for url in ("/api/v1/exports/pairs.jsonl", "/api/v1/exports/rankings.jsonl"):
        assert app_client.get(url, headers=annotator).status_code == 403
        assert app_client.get(url).status_code == 401


def test_admin_export_page_links_the_downloads(exported_data, app_client, make_user):
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    page = app_client.get("/admin/export")
    assert page.status_code == 200
    assert 'href="/api/v1/exports/rankings.jsonl"' in page.text
    assert 'href="/api/v1/exports/pairs.jsonl"' in page.text
    assert '<option value="second">second</option>' in page.text
    csrf_from(page.text)  # a full page, with the logout form
    # The links work with the admin's browser session (GET: no CSRF token needed).
    r = app_client.get("/api/v1/exports/rankings.jsonl", params={"prompt_set": "", "since": ""})
    assert r.status_code == 200 and len(r.text.splitlines()) == 5
