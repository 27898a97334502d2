"""Imports: every format, all-or-nothing on malformed lines, re-imports, concurrent imports (the API and the
admin form: test_import_api.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation import service as annotation_service
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.errors import Conflict, Invalid
from app.orm import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    SetStatus,
    User,
)
from app.prompts import service
from app.prompts.schemas import ImportKind

COUNTED = (PromptSet, Prompt, ModelVersion, Candidate, ComparisonSet, Assignment, Ranking)


def jsonl(*objs: Any) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode()


def counts(session: Session) -> dict[str, int]:
    return {m.__name__: session.scalar(select(func.count()).select_from(m)) or 0 for m in COUNTED}


def run(session: Session, data: bytes, kind: ImportKind, prompt_set: str | None = "t", filename: str = ""):
    return service.import_file(session, get_settings(), data, kind, prompt_set, filename)


def candidate_texts(session: Session, ids: list[int]) -> list[str]:
    by_id = {c.id: c.text for c in session.scalars(select(Candidate).where(Candidate.id.in_(ids)))}
    return [by_id[i] for i in ids]


def text_tiers(session: Session, ranking: Ranking) -> list[set[str]]:
    return [set(candidate_texts(session, tier)) for tier in ranking.tiers]


# --- prompts -----------------------------------------------------------------------------------------


def test_prompts_jsonl_creates_tagged_prompts_and_a_reimport_adds_nothing(db):
    data = jsonl({"prompt": "Why is the sky blue?", "tags": ["science", "kids"]}, {"prompt": "Write a haiku"})
    summary = run(db, data, ImportKind.prompts, "mine")
    assert (summary.prompt_set, summary.records, summary.prompts, summary.sets) == ("mine", 2, 2, 0)
    prompts = {p.text: p for p in db.scalars(select(Prompt))}
    assert prompts["Why is the sky blue?"].tags == ["science", "kids"]
    assert prompts["Write a haiku"].tags == []
    assert (
        db.scalar(select(PromptSet.name).where(PromptSet.id == prompts["Write a haiku"].prompt_set_id))
        == "mine"
    )

    before = counts(db)
    again = run(db, data, ImportKind.prompts, "mine")
    assert (again.prompts, again.duplicates) == (0, 2)
    assert counts(db) == before


def test_prompts_csv_with_semicolon_tags_and_multiline_prompt(db):
    data = b'prompt,tags\n"Explain:\nwhat is a monad?",fp; haskell ;\nPlain prompt,\n'
    summary = run(db, data, ImportKind.prompts, None, "prompts.csv")
    assert (summary.prompt_set, summary.prompts) == ("imported", 2)
    prompts = {p.text: p.tags for p in db.scalars(select(Prompt))}
    assert prompts == {"Explain:\nwhat is a monad?": ["fp", "haskell"], "Plain prompt": []}


def test_csv_errors_name_the_physical_line(db):
    # The quoted prompt spans lines 2-3, so the blank prompt is on line 4.
    data = b'prompt,tags\n"two\nlines",a\n"",orphan-tag\n'
    with pytest.raises(Invalid, match=r"line 4: prompt"):
        run(db, data, ImportKind.prompts, filename="p.csv")
    with pytest.raises(Invalid, match=r"line 1: .*'prompt' column"):
        run(db, b"text,tags\nhello,\n", ImportKind.prompts, filename="p.csv")
    assert counts(db)["Prompt"] == 0


# --- pairs -------------------------------------------------------------------------------------------


def test_pair_becomes_a_closed_set_ranked_by_the_imported_annotator(db):
    data = jsonl({"prompt": "2+2?", "chosen": "4", "rejected": "5"})
    summary = run(db, data, ImportKind.pairs)
    assert (summary.prompts, summary.candidates, summary.sets, summary.rankings) == (1, 2, 1, 1)

    ranking = db.scalars(select(Ranking)).one()
    assert text_tiers(db, ranking) == [{"4"}, {"5"}]
    assert (ranking.source, ranking.all_bad, ranking.dropped) == ("import", False, False)
    assert len(ranking.fingerprint) == 64
    annotator = db.get(User, ranking.annotator_id)
    assert annotator is not None and annotator.username == "imported" and annotator.password_hash is None
    cset = db.get(ComparisonSet, ranking.set_id)
    assert cset is not None and (cset.overlap, cset.status) == (1, SetStatus.closed)
    assignment = db.get(Assignment, ranking.assignment_id)
    assert assignment is not None and assignment.status == AssignmentStatus.submitted
    assert sorted(assignment.display_order) == sorted(c.candidate_id for c in cset.items)
    version = db.scalars(select(ModelVersion)).one()
    assert (version.name, version.kind, version.status) == (
        "imported",
        ModelKind.external,
        ModelStatus.active,
    )


def test_pairs_share_prompts_and_candidates_and_reimport_counts_nothing_twice(db):
    data = jsonl(
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Nice", "model": "gpt-x"},
        {"prompt": "Capital of France?", "chosen": "Lyon", "rejected": "Nice"},
    )
    summary = run(db, data, ImportKind.pairs)
    # Line 2 names its own model, so its "Paris" is a different candidate from line 1's.
    assert (summary.prompts, summary.candidates, summary.sets, summary.rankings) == (1, 5, 3, 3)
    assert {v.name for v in db.scalars(select(ModelVersion))} == {"imported", "gpt-x"}

    before = counts(db)
    again = run(db, data, ImportKind.pairs)
    assert (again.rankings, again.duplicates) == (0, 3)
    assert counts(db) == before


# --- ranked groups -------------------------------------------------------------------------------------


def test_ranked_group_with_tie_and_unranked_group_waiting_for_annotators(db):
    data = jsonl(
        {"prompt": "Name a colour", "completions": ["red", "blue", "green"], "ranking": [[2], [0, 1]]},
        {"prompt": "Name a fruit", "completions": ["apple", "pear"], "tags": ["food"]},
    )
    summary = run(db, data, ImportKind.ranked_groups)
    assert (summary.prompts, summary.candidates, summary.sets, summary.rankings) == (2, 5, 2, 1)

    ranking = db.scalars(select(Ranking)).one()
    assert text_tiers(db, ranking) == [{"green"}, {"red", "blue"}]
    fruit = db.scalars(select(Prompt).where(Prompt.text == "Name a fruit")).one()
    assert fruit.tags == ["food"]
    open_set = db.scalars(select(ComparisonSet).where(ComparisonSet.prompt_id == fruit.id)).one()
    assert (open_set.status, open_set.overlap) == (SetStatus.open, get_settings().overlap)
    assert candidate_texts(db, [i.candidate_id for i in open_set.items]) == ["apple", "pear"]
    assert (
        db.scalar(select(func.count()).select_from(Assignment).where(Assignment.set_id == open_set.id)) == 0
    )


def test_an_imported_ranking_fingerprints_like_a_web_submission_of_the_same_answer(db):
    # The web path recognises an identical repeat by its fingerprint: submitting the imported answer again
    # through it must find the stored ranking (and a different answer must not).
    data = jsonl(
        {"prompt": "Name a colour", "completions": ["red", "blue", "green"], "ranking": [[2], [0, 1]]}
    )
    run(db, data, ImportKind.ranked_groups)
    ranking = db.scalars(select(Ranking)).one()
    annotator = db.get(User, ranking.annotator_id)
    assert annotator is not None
    same = RankingIn(assignment_id=ranking.assignment_id, tiers=[list(t) for t in ranking.tiers])
    result = annotation_service.submit_ranking(db, get_settings(), annotator, same)
    assert (result.created, result.ranking.id) == (False, ranking.id)
    different = RankingIn(assignment_id=ranking.assignment_id, tiers=list(reversed(ranking.tiers)))
    with pytest.raises(Conflict, match="different answer"):
        annotation_service.submit_ranking(db, get_settings(), annotator, different)


def oa_tree() -> dict[str, Any]:
    def msg(text, role, replies=(), rank=None, deleted=False):
        return {"message_id": text, "text": text, "role": role, "rank": rank, "deleted": deleted,
                "replies": list(replies)}  # fmt: skip

    nested = [
        msg("A2a", "assistant", rank=1),
        msg("A2b", "assistant", rank=0),
        msg("A2c", "assistant", rank=1),
    ]
    return {
        "message_tree_id": "tree-1",
        "prompt": msg(
            "Q1",
            "prompter",
            [
                msg("A1", "assistant", [msg("Q2", "prompter", nested)], rank=0),
                msg("B1", "assistant", rank=1),
                msg("C1", "assistant", rank=2, deleted=True),
                msg("D1", "assistant"),  # unranked: not part of the group
            ],
        ),
    }


@pytest.mark.parametrize("kind", [ImportKind.ranked_groups, ImportKind.oasst])
def test_open_assistant_tree_groups_become_ranked_sets(db, kind):
    summary = run(db, jsonl(oa_tree()), kind)
    assert (summary.records, summary.prompts, summary.candidates, summary.rankings) == (2, 2, 5, 2)
    by_prompt = {
        db.get(Prompt, db.get(ComparisonSet, r.set_id).prompt_id).text: r for r in db.scalars(select(Ranking))
    }
    assert text_tiers(db, by_prompt["Q1"]) == [{"A1"}, {"B1"}]
    assert text_tiers(db, by_prompt["User: Q1\n\nAssistant: A1\n\nUser: Q2"]) == [{"A2b"}, {"A2a", "A2c"}]
    version = db.scalars(select(ModelVersion)).one()
    assert (version.name, version.kind) == ("oasst-human", ModelKind.external)
    a1 = db.scalars(select(Candidate).where(Candidate.text == "A1")).one()
    assert a1.generation_params["message_id"] == "A1"


def test_oasst_kind_insists_on_trees(db):
    data = jsonl(oa_tree(), {"prompt": "flat", "completions": ["a", "b"]})
    with pytest.raises(Invalid, match=r"line 2: prompt: not an Open-Assistant message tree"):
        run(db, data, ImportKind.oasst)
    assert counts(db)["Prompt"] == 0


# --- malformed files: line number in the message, nothing written ---------------------------------------

GOOD_GROUP = {"prompt": "fine", "completions": ["x", "y"], "ranking": [[0], [1]]}


def ab(ranking: str) -> str:
    return f'{{"prompt": "p", "completions": ["a", "b"], "ranking": {ranking}}}'


RG, PAIRS, PROMPTS = ImportKind.ranked_groups, ImportKind.pairs, ImportKind.prompts
TEN = json.dumps({"prompt": "p", "completions": [str(i) for i in range(10)]})


@pytest.mark.parametrize(
    ("kind", "bad_line", "message"),
    [
        (RG, '{"prompt": "p", "completions": ["a", "b"]', "not valid JSON"),
        (RG, '["a", "b"]', "expected a JSON object"),
        (RG, '{"completions": ["a", "b"]}', "prompt: Field required"),
        (RG, '{"prompt": 3, "completions": ["a", "b"]}', "prompt: must be a text or a non-empty list"),
        (RG, '{"prompt": "  ", "completions": ["a", "b"]}', "prompt: must not be blank"),
        (RG, '{"prompt": "p", "completions": "ab"}', "completions: Input should be"),
        (RG, ab('[["0"], [1]]'), "ranking.0.0"),
        (RG, ab("[[true], [1]]"), "ranking.0.0"),
        (RG, ab("[[0], [2]]"), "outside completions"),
        (RG, ab("[[0], [0, 1]]"), "more than once"),
        (RG, ab("[[0]]"), "unranked"),
        (RG, ab("[[0], []]"), "empty"),
        (RG, '{"prompt": "p", "completions": ["a"]}', "2 to 9 completions, got 1"),
        (RG, TEN, "got 10"),
        (RG, '{"prompt": "p", "completions": ["a", "a"]}', "same text"),
        (PAIRS, '{"prompt": "p", "chosen": "a"}', "rejected: Field required"),
        (PAIRS, '{"prompt": "p", "chosen": "a", "rejected": "a"}', "same text"),
        (PROMPTS, '{"prompt": "p", "tags": "a;b"}', "tags: Input should be"),
        (RG, '{"prompt": "a\\u0000b", "completions": ["a", "b"]}', "prompt: character 2 is a NUL (U+0000)"),
        (
            PAIRS,
            '{"prompt": "p", "chosen": "\\ud800", "rejected": "b"}',
            "chosen: character 1 is a lone surrogate",
        ),
    ],
)
def test_a_malformed_line_is_named_and_nothing_is_written(db, kind, bad_line, message):
    good = (
        GOOD_GROUP if kind == ImportKind.ranked_groups else {"prompt": "fine", "chosen": "x", "rejected": "y"}
    )
    data = (json.dumps(good) + "\n\n" + bad_line + "\n" + json.dumps(good) + "\n").encode()
    before = counts(db)
    with pytest.raises(Invalid) as err:
        run(db, data, kind)
    assert "line 3:" in err.value.message and message in err.value.message
    assert "line 1" not in err.value.message and "line 4" not in err.value.message
    assert counts(db) == before


def test_every_bad_line_is_reported_at_once(db):
    data = b'{"prompt": 1}\n{"prompt": "ok"}\nnope\n'
    with pytest.raises(Invalid) as err:
        run(db, data, ImportKind.prompts)
    assert err.value.message.startswith("2 malformed line(s)")
    assert "line 1:" in err.value.message and "line 3:" in err.value.message


def test_too_many_ranked_replies_in_a_tree_is_rejected(db):
    tree = {"prompt": {"text": "Q", "role": "prompter", "replies": [
        {"text": f"A{i}", "role": "assistant", "rank": i, "replies": []} for i in range(10)]}}  # fmt: skip
    with pytest.raises(Invalid, match=r"line 1: 10 ranked replies"):
        run(db, jsonl(tree), ImportKind.ranked_groups)
    assert counts(db)["Prompt"] == 0


def test_non_utf8_and_empty_files_are_refused(db):
    with pytest.raises(Invalid, match=r"line 2: not UTF-8"):
        run(db, b'{"prompt": "a"}\n{"prompt": "\xff"}\n', ImportKind.prompts)
    with pytest.raises(Invalid, match="no records"):
        run(db, b"\n\n", ImportKind.prompts)


def committed_counts() -> dict[str, int]:
    from app.db import session_scope

    with session_scope() as session:
        return counts(session)


def test_concurrent_imports_into_one_new_prompt_set_both_land(clean_db):
    import threading
    import time

    from app.db import session_factory

    first, second = session_factory()(), session_factory()()
    outcome: dict[str, Any] = {}

    def second_import() -> None:
        try:
            outcome["summary"] = run(
                second, jsonl({"prompt": "q2", "chosen": "a", "rejected": "b"}), ImportKind.pairs, "race"
            )
            second.commit()
        except Exception as exc:  # reported below
            outcome["error"] = exc

    try:
        run(first, jsonl({"prompt": "q1", "chosen": "a", "rejected": "b"}), ImportKind.pairs, "race")
        thread = threading.Thread(target=second_import)
        thread.start()
        time.sleep(0.5)
        # The second import waits on the first one's uncommitted prompt set and model version names.
        assert thread.is_alive()
        first.commit()
        thread.join(timeout=30)
    finally:
        first.close()
        second.close()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"].rankings == 1
    c = committed_counts()
    assert (c["PromptSet"], c["ModelVersion"], c["Prompt"], c["Ranking"]) == (1, 1, 2, 2)
