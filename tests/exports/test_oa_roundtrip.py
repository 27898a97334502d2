"""The real Open-Assistant sample through import -> export -> re-import, checked against the raw file."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_scope
from app.demo.seed import DATA_FILE
from app.exports import service as exports
from app.orm import ComparisonSet, Ranking, SetStatus, User
from app.prompts import service as imports
from app.prompts.schemas import ImportKind

ROOT = Path(__file__).resolve().parents[2]


def raw_groups() -> Iterator[list[dict[str, Any]]]:
    """Every group of >= 2 ranked sibling assistant replies, straight from the JSON."""
    stack = [json.loads(line)["prompt"] for line in DATA_FILE.read_text().splitlines() if line.strip()]
    while stack:
        message = stack.pop()
        ranked = [
            r
            for r in message.get("replies", [])
            if r["role"] == "assistant" and r.get("rank") is not None and not r.get("deleted")
        ]
        if message["role"] == "prompter" and len(ranked) >= 2:
            yield ranked
        stack.extend(message.get("replies", []))


def implied_pairs(group: list[dict[str, Any]]) -> int:
    """Replies with different ranks make one pair each; equal ranks (a tie) make none."""
    return sum(1 for a in group for b in group if a["rank"] < b["rank"])


def test_the_repo_copy_is_the_documented_file():
    assert DATA_FILE.parent == ROOT / "app" / "demo" / "data"
    readme = (DATA_FILE.parent / "README.md").read_text()
    assert "Apache License 2.0" in readme and "LAION-AI/Open-Assistant" in readme
    groups = list(raw_groups())
    assert len(groups) == 212
    assert all(len({r["rank"] for r in g}) == len(g) for g in groups), "the sample has no ties"


def test_open_assistant_import_export_and_reimport_round_trip(clean_db, tmp_path):
    groups = list(raw_groups())
    with session_scope() as session:
        summary = imports.import_file(
            session, get_settings(), DATA_FILE.read_bytes(), ImportKind.ranked_groups, "oa", DATA_FILE.name
        )
    assert (summary.records, summary.sets, summary.rankings, summary.duplicates) == (212, 212, 212, 0)
    assert summary.candidates == sum(len(g) for g in groups)

    with session_scope() as session:
        annotators = session.scalars(select(User.username).join(Ranking, Ranking.annotator_id == User.id))
        assert Counter(annotators) == {"imported": 212}
        statuses = session.execute(select(ComparisonSet.status, ComparisonSet.overlap)).all()
        assert Counter(statuses) == {(SetStatus.closed, 1): 212}

        rankings = [json.loads(line) for line in exports.rankings_export(session)]
        pairs = [json.loads(line) for line in exports.pairs_export(session)]
    assert len(rankings) == 212
    # k*(k-1)/2 per group here, since no group has ties.
    assert (
        len(pairs) == sum(implied_pairs(g) for g in groups) == sum(len(g) * (len(g) - 1) // 2 for g in groups)
    )

    # The best reply of the first tree beats its third with margin 2, as in the raw file.
    first_tree = json.loads(DATA_FILE.read_text().splitlines()[0])["prompt"]
    by_rank = {r["rank"]: r["text"] for r in first_tree["replies"]}
    match = [p for p in pairs if p["chosen"] == by_rank[0] and p["rejected"] == by_rank[2]]
    assert len(match) == 1 and match[0]["margin"] == 2 and match[0]["prompt"] == first_tree["text"]

    # Re-importing the exported pairs as TRL pairs (extra keys ignored) gives back the same preferences.
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    with session_scope() as session:
        again = imports.import_file(
            session, get_settings(), pairs_file.read_bytes(), ImportKind.pairs, "oa-pairs", pairs_file.name
        )
        assert (again.records, again.rankings, again.duplicates) == (len(pairs), len(pairs), 0)
        # Pairs of one group share its prompt and its candidates.
        assert again.prompts == 212
        assert again.candidates == summary.candidates
    with session_scope() as session:
        # The export reads committed data with its own session.
        reexported = [json.loads(line) for line in exports.pairs_export(session, prompt_set="oa-pairs")]
        total = session.scalar(select(func.count()).select_from(Ranking))
    assert total == 212 + len(pairs)
    assert Counter((p["prompt"], p["chosen"], p["rejected"]) for p in reexported) == Counter(
        (p["prompt"], p["chosen"], p["rejected"]) for p in pairs
    )
    assert all(p["margin"] == 1 for p in reexported)
