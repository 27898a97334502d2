"""Gold sets are not training data: exports leave their rankings out, and no prompt of a gold set is picked
for new sets or as an unranked prompt for reward-model-labelled pairs and RLOO."""

from __future__ import annotations

from sqlalchemy import select

from app.annotation import gold
from app.db import session_scope
from app.orm import ComparisonSet, Prompt
from app.prompts.schemas import ImportKind
from tests.exports.test_exports import export, write_import
from worker.candidates import prompts_needing_work
from worker.snapshot import unlabelled_prompts


def _set_of(session, text: str) -> ComparisonSet:
    return session.scalars(
        select(ComparisonSet).join(Prompt, Prompt.id == ComparisonSet.prompt_id).where(Prompt.text == text)
    ).one()


def test_rankings_of_a_set_are_exported_until_it_is_marked_gold(clean_db):
    write_import(
        [
            {"prompt": "ordinary", "chosen": "a", "rejected": "b"},
            {"prompt": "becomes gold", "chosen": "c", "rejected": "d"},
        ],
        "s",
        ImportKind.pairs,
    )
    assert {r["prompt"]["text"] for r in export("rankings")} == {"ordinary", "becomes gold"}
    with session_scope() as session:
        cset = _set_of(session, "becomes gold")
        gold.mark_gold(session, cset.id, [[i.candidate_id] for i in cset.items])
    assert [r["prompt"]["text"] for r in export("rankings")] == ["ordinary"]
    assert [p["prompt"] for p in export("pairs")] == ["ordinary"]
    with session_scope() as session:
        gold.unmark_gold(session, _set_of(session, "becomes gold").id)
    assert len(export("pairs")) == 2


def test_prompts_of_gold_sets_are_never_picked_for_new_sets_or_as_unranked_prompts(clean_db):
    write_import(
        [{"prompt": "known", "completions": ["x", "y"], "ranking": [[0], [1]]}], "g", ImportKind.gold
    )
    write_import([{"prompt": "fresh"}, {"prompt": "also fresh"}], "p", ImportKind.prompts)
    with session_scope() as session:
        assert sorted(unlabelled_prompts(session, 10, seed=0)) == ["also fresh", "fresh"]
        # A gold set stays open (never closed by overlap), so generation never gives its prompt new sets.
        assert sorted(p.prompt for p in prompts_needing_work(session, 10)) == ["also fresh", "fresh"]
        # Un-marked, its set is an ordinary open one: still not a prompt waiting for work, but unranked.
        gold.unmark_gold(session, _set_of(session, "known").id)
        assert sorted(unlabelled_prompts(session, 10, seed=0)) == ["also fresh", "fresh", "known"]
