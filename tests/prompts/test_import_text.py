"""One rule for every text an import brings (issue 12, part 3): lines split on "\\n" only, blank texts
refused (blank Open-Assistant replies left out and counted), opposite judgements both kept, the same
prompt-set names for every kind, and the pairs export importing back as it was written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope
from app.errors import Invalid
from app.exports import service as exports
from app.orm import ComparisonSet, Prompt, Ranking
from app.prompts import service
from app.prompts.schemas import ImportKind
from app.text import PROMPT_CHARS
from tests.prompts.test_imports import candidate_texts, counts, run

ODD = "line\u2028separator, paragraph\u2029separator, NBSP\u00a0and an emoji \U0001f600"


def raw_jsonl(*objs: Any, newline: str = "\n") -> bytes:
    # ensure_ascii=False writes U+2028 and its kind raw, as rankloop's own export (pydantic) does.
    return "".join(json.dumps(o, ensure_ascii=False) + newline for o in objs).encode()


def rankings_by_prompt(session: Session, text: str) -> list[list[set[str]]]:
    rows = session.scalars(
        select(Ranking)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(Prompt.text == text)
        .order_by(Ranking.id)
    )
    return [[set(candidate_texts(session, tier)) for tier in r.tiers] for r in rows]


# --- lines -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_unicode_line_separators_inside_json_strings_are_text_not_line_breaks(db, newline):
    data = raw_jsonl(
        {"prompt": ODD, "chosen": "yes\u2028no", "rejected": "x\u0085y".replace("\u0085", "\u2029")},
        {"prompt": "second", "chosen": "a", "rejected": "b"},
        newline=newline,
    )
    assert "\u2028".encode() in data
    summary = run(db, data, ImportKind.pairs)
    assert (summary.records, summary.rankings) == (2, 2)
    assert db.scalar(select(Prompt.text).where(Prompt.text == ODD)) == ODD


def test_a_bad_line_is_named_by_its_number_in_the_file_not_by_a_split_of_it(db):
    data = raw_jsonl({"prompt": "a\u2028b\u2028c", "chosen": "x", "rejected": "y"}) + b'{"prompt": 3}\n'
    with pytest.raises(Invalid) as err:
        run(db, data, ImportKind.pairs)
    assert err.value.message.startswith("1 malformed line(s), nothing imported: line 2: ")


def test_the_pairs_export_imports_back_as_it_was_written(clean_db):
    pairs = [
        {"prompt": ODD, "chosen": "good\u2028answer", "rejected": "bad\r\nanswer"},
        {"prompt": "tabs\tand\nnewlines", "chosen": "A\u2029", "rejected": "B"},
    ]
    with session_scope() as s:
        service.import_file(s, get_settings(), raw_jsonl(*pairs), ImportKind.pairs, "first")
    with session_scope() as s:
        exported = "".join(exports.pairs_export(s, "first"))
    assert "\u2028" in exported  # written raw, one pair per "\n"-terminated line
    with session_scope() as s:
        again = service.import_file(s, get_settings(), exported.encode(), ImportKind.pairs, "second")
    assert (again.records, again.rankings, again.duplicates) == (2, 2, 0)
    with session_scope() as s:
        back = [
            {k: line[k] for k in ("prompt", "chosen", "rejected")}
            for line in map(json.loads, exports.pairs_export(s, "second"))
        ]
    assert sorted(back, key=json.dumps) == sorted(pairs, key=json.dumps)


def comparable(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A rankings export without its ids: prompt, candidates (text, version) and tiers of those."""
    out = []
    for line in lines:
        by_id = {c["id"]: (c["text"], c["model_version"]) for c in line["candidates"]}
        tiers = tuple(frozenset(by_id[c] for c in tier) for tier in line["tiers"])
        out.append(
            (
                line["prompt"]["text"],
                tuple(line["prompt"]["tags"]),
                frozenset(by_id.values()),
                tiers,
                line["all_bad"],
            )
        )
    return sorted(out, key=repr)


def test_the_rankings_export_imports_back_as_ranked_groups(clean_db):
    groups = [
        {"prompt": ODD, "completions": ["a\u2028b", "c", "d"], "ranking": [[1], [0, 2]], "tags": ["t"]},
        {"prompt": "two models", "completions": ["same", "other"], "ranking": [[0], [1]], "model": "m1"},
        {"prompt": "two models", "completions": ["same", "third"], "ranking": [[1], [0]], "model": "m2"},
    ]
    with session_scope() as s:
        service.import_file(s, get_settings(), raw_jsonl(*groups), ImportKind.ranked_groups, "first")
        # A set of candidates from two versions, one text written by both, judged all bad.
        first = exports.rankings_export(s, "first")
    lines = [json.loads(line) for line in first]
    mixed = {
        "prompt": {"text": "mixed", "tags": []},
        "candidates": [
            {"id": 1, "text": "same", "model_version": "m1"},
            {"id": 2, "text": "same", "model_version": "m2"},
        ],
        "tiers": [[2], [1]],
        "all_bad": True,
    }
    with session_scope() as s:
        data = raw_jsonl(*lines, mixed)
        summary = service.import_file(s, get_settings(), data, ImportKind.ranked_groups, "second")
    assert (summary.records, summary.rankings, summary.duplicates) == (4, 4, 0)
    with session_scope() as s:
        back = [json.loads(line) for line in exports.rankings_export(s, "second")]
    assert comparable(back) == comparable([*lines, mixed])
    with session_scope() as s:
        again = service.import_file(s, get_settings(), data, ImportKind.ranked_groups, "second")
    assert (again.rankings, again.duplicates) == (0, 4)


# --- blank texts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "line", "field"),
    [
        (ImportKind.prompts, {"prompt": "   "}, "prompt"),
        (ImportKind.prompts, {"prompt": "\u200b\ufeff"}, "prompt"),
        (ImportKind.pairs, {"prompt": "p", "chosen": "", "rejected": "b"}, "chosen"),
        (ImportKind.pairs, {"prompt": "p", "chosen": "a", "rejected": " \t\n"}, "rejected"),
        (ImportKind.pairs, {"prompt": "", "chosen": "a", "rejected": "b"}, "prompt"),
        (ImportKind.ranked_groups, {"prompt": "p", "completions": ["a", "  "]}, "completions.1"),
        (ImportKind.demonstrations, {"prompt": "p", "completion": "\u3000"}, "completion"),
        (ImportKind.demonstrations, {"prompt": " ", "completion": "c"}, "prompt"),
    ],
)
def test_blank_prompts_and_candidates_are_refused_for_every_kind(db, kind, line, field):
    before = counts(db)
    with pytest.raises(Invalid) as err:
        run(db, raw_jsonl({"prompt": "fine", "completion": "ok", "chosen": "x", "rejected": "y"}, line), kind)
    assert f"line 2: {field}: must not be blank" in err.value.message
    assert counts(db) == before


def test_a_blank_csv_prompt_with_tags_is_refused(db):
    with pytest.raises(Invalid, match="line 3: prompt: must not be blank"):
        run(db, b"prompt,tags\nfine,a\n  ,b;c\n", ImportKind.prompts, filename="p.csv")


def test_over_the_documented_limit_is_refused_naming_the_field(db):
    with pytest.raises(Invalid, match="line 1: prompt: String should have at most 100000 characters"):
        run(db, raw_jsonl({"prompt": "x" * (PROMPT_CHARS + 1)}), ImportKind.prompts)
    with pytest.raises(Invalid, match=r"line 1: tags\.0: String should have at most 100 characters"):
        run(db, raw_jsonl({"prompt": "p", "tags": ["t" * 101]}), ImportKind.prompts)


def oa_tree(root: str, replies: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "message_tree_id": "t1",
        "prompt": {"message_id": "m0", "text": root, "role": "prompter", "replies": replies},
    }


def reply(text: str, rank: int, replies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "message_id": f"r{rank}-{len(text)}",
        "text": text,
        "role": "assistant",
        "rank": rank,
        "replies": replies or [],
    }


def test_blank_open_assistant_replies_are_left_out_and_counted(clean_db):
    follow_up = {
        "text": "And then?",
        "role": "prompter",
        "replies": [reply("Then X.", 0), reply("Then Y.", 1)],
    }
    blank_turn = {"text": "  ", "role": "prompter", "replies": [reply("lost 1", 0), reply("lost 2", 1)]}
    tree = oa_tree(
        "Tell me a story",
        [
            reply("Once upon a time.", 0, [follow_up]),
            reply("", 1),
            reply("   ", 2),
            reply("The end.", 3, [blank_turn]),
        ],
    )
    with session_scope() as s:
        summary = service.import_file(s, get_settings(), raw_jsonl(tree), ImportKind.oasst, "oa")
    # Two groups: the root's (two replies left once the blank two are out) and the follow-up's; the
    # blank follow-up turn is left out with the replies under it.
    assert (summary.records, summary.rankings, summary.left_out) == (2, 2, 3)
    with session_scope() as s:
        pairs = [json.loads(line) for line in exports.pairs_export(s, "oa")]
    assert pairs and all(p["chosen"].strip() and p["rejected"].strip() and p["prompt"].strip() for p in pairs)
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {
        ("Once upon a time.", "The end."),
        ("Then X.", "Then Y."),
    }


def test_an_open_assistant_tree_with_a_blank_root_is_refused(db):
    with pytest.raises(Invalid, match=r"line 1: prompt\.text: must not be blank"):
        run(db, raw_jsonl(oa_tree("", [reply("a", 0), reply("b", 1)])), ImportKind.oasst)


# --- duplicates and conflicts ------------------------------------------------------------------------


AB = {"prompt": "Which is better?", "chosen": "A", "rejected": "B"}
BA = {"prompt": "Which is better?", "chosen": "B", "rejected": "A"}


@pytest.mark.parametrize("lines", [[AB, BA], [BA, AB]], ids=["A>B first", "B>A first"])
def test_opposite_judgements_are_both_kept_and_counted_as_a_conflict(db, lines):
    summary = run(db, raw_jsonl(*lines), ImportKind.pairs)
    counted = (summary.records, summary.sets, summary.rankings, summary.duplicates, summary.conflicts)
    assert counted == (2, 2, 2, 0, 1)
    tiers = sorted(rankings_by_prompt(db, "Which is better?"), key=str)
    assert tiers == [[{"A"}, {"B"}], [{"B"}, {"A"}]]
    # Whatever the order, both judgements are there; a re-import adds nothing and conflicts with nothing.
    again = run(db, raw_jsonl(*lines), ImportKind.pairs)
    assert (again.rankings, again.duplicates, again.conflicts) == (0, 2, 0)


def test_the_same_judgement_twice_is_a_duplicate(db):
    summary = run(db, raw_jsonl(AB, AB, BA, AB), ImportKind.pairs)
    assert (summary.rankings, summary.duplicates, summary.conflicts) == (2, 2, 1)


def test_a_ranked_group_that_disagrees_with_an_earlier_import_is_kept_as_a_conflict(db):
    group = {"prompt": "p", "completions": ["a", "b", "c"], "ranking": [[0], [1], [2]]}
    run(db, raw_jsonl(group), ImportKind.ranked_groups)
    tie = {**group, "ranking": [[2], [0, 1]]}
    reordered = {"prompt": "p", "completions": ["c", "b", "a"], "ranking": [[2], [1], [0]]}
    summary = run(db, raw_jsonl(tie, reordered), ImportKind.ranked_groups)
    # The same candidates in another order with the same judgement is no conflict: a duplicate.
    assert (summary.rankings, summary.duplicates, summary.conflicts) == (1, 1, 1)


# --- prompt-set names --------------------------------------------------------------------------------


def one_line_of(kind: ImportKind) -> bytes:
    lines = {
        ImportKind.prompts: {"prompt": "p"},
        ImportKind.pairs: {"prompt": "p", "chosen": "a", "rejected": "b"},
        ImportKind.ranked_groups: {"prompt": "p", "completions": ["a", "b"]},
        ImportKind.oasst: oa_tree("p", [reply("a", 0), reply("b", 1)]),
        ImportKind.demonstrations: {"prompt": "p", "completion": "c"},
        ImportKind.gold: {"prompt": "p", "completions": ["a", "b"], "ranking": [[0], [1]]},
    }
    return raw_jsonl(lines[kind])


@pytest.mark.parametrize("kind", list(ImportKind))
@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("bell\x07", "control character U+0007"),
        ("two\nlines", "this field is one line"),
        ("sep\u2028arated", "this field is one line"),
        ("tab\tbed", "this field is one line"),
        ("\ud800", "lone surrogate"),
        ("n" * 201, "longer than 200 characters"),
    ],
)
def test_prompt_set_names_follow_one_rule_for_every_import_kind(db, kind, name, problem):
    before = counts(db)
    with pytest.raises(Invalid) as err:
        run(db, one_line_of(kind), kind, prompt_set=name)
    assert err.value.message.startswith("prompt_set: ") and problem in err.value.message
    if kind == ImportKind.demonstrations:
        with pytest.raises(Invalid, match=r"^prompt_set: "):
            service.import_demonstrations(db, get_settings(), one_line_of(kind), name)
    assert counts(db) == before
