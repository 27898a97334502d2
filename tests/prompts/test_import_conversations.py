"""Imports of conversations: TRL's conversational formats as they are, Open-Assistant trees with their
roles, and the rule for a message list (errors name the line, the field and the turn)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.errors import Invalid
from app.orm import ComparisonSet, Prompt, Ranking
from app.prompts.schemas import ImportKind
from tests.prompts.test_imports import counts, jsonl, run, text_tiers


def sys_(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


CHAT = [sys_("Be brief."), user("Hi"), bot("Hello!"), user("What is 2+2?")]
FLAT = "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: What is 2+2?"


def ranked_prompts(db) -> dict[str, tuple[Prompt, Ranking]]:
    out = {}
    for ranking in db.scalars(select(Ranking)):
        prompt = db.get(Prompt, db.get(ComparisonSet, ranking.set_id).prompt_id)
        out[prompt.text] = (prompt, ranking)
    return out


def test_prompt_only_conversation_keeps_its_turns_and_one_user_turn_is_a_plain_prompt(db):
    summary = run(
        db, jsonl({"prompt": CHAT, "tags": ["chat"]}, {"prompt": [user("Just text")]}), ImportKind.prompts
    )
    assert summary.prompts == 2
    prompts = {p.text: p for p in db.scalars(select(Prompt))}
    assert prompts[FLAT].messages == CHAT
    assert prompts[FLAT].tags == ["chat"]
    assert prompts["Just text"].messages is None

    again = run(db, jsonl({"prompt": CHAT}), ImportKind.prompts)
    assert (again.prompts, again.duplicates) == (0, 1)


def test_conversational_preference_with_an_explicit_prompt(db):
    line = {"prompt": CHAT, "chosen": [bot("4")], "rejected": [bot("5")]}
    summary = run(db, jsonl(line), ImportKind.pairs)
    assert (summary.prompts, summary.candidates, summary.rankings) == (1, 2, 1)
    prompt, ranking = ranked_prompts(db)[FLAT]
    assert prompt.messages == CHAT
    assert text_tiers(db, ranking) == [{"4"}, {"5"}]


def test_implicit_prompt_preference_takes_the_shared_turns_as_the_prompt(db):
    line = {"chosen": [*CHAT, bot("4")], "rejected": [*CHAT, bot("22")]}
    # A standard prompt beside conversational replies is ignored, as TRL's maybe_extract_prompt does.
    with_text_prompt = {
        "prompt": "What is 2+2?",
        "chosen": [user("x"), bot("a")],
        "rejected": [user("x"), bot("b")],
    }
    summary = run(db, jsonl(line, with_text_prompt), ImportKind.pairs)
    assert (summary.prompts, summary.rankings) == (2, 2)
    found = ranked_prompts(db)
    prompt, ranking = found[FLAT]
    assert prompt.messages == CHAT
    assert text_tiers(db, ranking) == [{"4"}, {"22"}]
    assert found["x"][0].messages is None


def test_ranked_group_with_a_conversation_prompt(db):
    line = {"prompt": CHAT, "completions": ["4", "four", "5"], "ranking": [[0, 1], [2]]}
    run(db, jsonl(line), ImportKind.ranked_groups)
    prompt, ranking = ranked_prompts(db)[FLAT]
    assert prompt.messages == CHAT
    assert text_tiers(db, ranking) == [{"4", "four"}, {"5"}]


def test_conversational_demonstration(db):
    line = {"prompt": CHAT, "completion": [bot("4")]}
    summary = run(db, jsonl(line), ImportKind.demonstrations)
    assert summary.candidates == 1
    assert db.scalars(select(Prompt)).one().messages == CHAT


def test_open_assistant_replies_keep_their_conversation_with_roles(db):
    def msg(text, role, replies=(), rank=None):
        return {"text": text, "role": role, "rank": rank, "message_id": text, "replies": list(replies)}

    follow_up = msg("Q2", "prompter", [msg("A2a", "assistant", rank=0), msg("A2b", "assistant", rank=1)])
    tree = {
        "prompt": msg(
            "Q1", "prompter", [msg("A1", "assistant", [follow_up], 0), msg("B1", "assistant", rank=1)]
        )
    }
    run(db, jsonl(tree), ImportKind.oasst)
    prompts = {p.text: p for p in db.scalars(select(Prompt))}
    assert prompts["Q1"].messages is None
    assert prompts["User: Q1\n\nAssistant: A1\n\nUser: Q2"].messages == [user("Q1"), bot("A1"), user("Q2")]


def test_a_prompt_flattened_by_an_older_import_gets_its_turns_back(db):
    flat = "User: Q1\n\nAssistant: A1\n\nUser: Q2"
    run(db, jsonl({"prompt": flat}), ImportKind.prompts)
    summary = run(db, jsonl({"prompt": [user("Q1"), bot("A1"), user("Q2")]}), ImportKind.prompts)
    assert (summary.prompts, summary.duplicates) == (0, 1)
    assert db.scalars(select(Prompt)).one().messages == [user("Q1"), bot("A1"), user("Q2")]


PROMPTS, PAIRS, RG = ImportKind.prompts, ImportKind.pairs, ImportKind.ranked_groups


@pytest.mark.parametrize(
    ("kind", "line", "message"),
    [
        (PROMPTS, {"prompt": []}, "prompt: must be a text or a non-empty list of messages"),
        (PROMPTS, {"prompt": [user("a"), "b"]}, 'prompt.1: must be an object with "role" and "content"'),
        (
            PROMPTS,
            {"prompt": [{"role": "tool", "content": "x"}, user("a")]},
            "prompt.0.role: must be system, user or assistant (got 'tool')",
        ),
        (PROMPTS, {"prompt": [user("a"), bot(" \u200b ")]}, "prompt.1.content: must not be blank"),
        (
            PROMPTS,
            {"prompt": [user("a"), {"role": "user", "content": ["x"]}]},
            "prompt.1.content: must be a text",
        ),
        (PROMPTS, {"prompt": [user("a\x00")]}, "prompt.0.content: character 2 is a NUL (U+0000)"),
        (
            PROMPTS,
            {"prompt": [user("a"), bot("b")]},
            "prompt.1.role: the last turn must be the user's (got assistant)",
        ),
        (
            RG,
            {"prompt": [user("a"), bot("b")], "completions": ["x", "y"]},
            "prompt.1.role: the last turn must be the user's",
        ),
        (
            PAIRS,
            {"prompt": CHAT, "chosen": [bot("a"), user("more")], "rejected": [bot("b")]},
            "chosen: a reply is one assistant message (got assistant, user)",
        ),
        (
            PAIRS,
            {"chosen": "a", "rejected": "b"},
            "prompt: missing (an implicit prompt needs chosen and rejected as message lists)",
        ),
        (
            PAIRS,
            {"chosen": [user("a"), bot("x")], "rejected": [user("b"), bot("y")]},
            "prompt: chosen and rejected must share the conversation up to a user turn",
        ),
        (
            PAIRS,
            {"chosen": [user("a"), bot("x")], "rejected": [user("a"), bot("x")]},
            "chosen and rejected are the same conversation",
        ),
        (
            PAIRS,
            {"prompt": CHAT, "chosen": [bot("")], "rejected": [bot("b")]},
            "chosen.0.content: must not be blank",
        ),
    ],
)
def test_a_bad_conversation_is_named_by_line_field_and_turn(db, kind, line, message):
    good = {"prompt": CHAT, "chosen": [bot("x")], "rejected": [bot("y")], "completions": ["x", "y"]}
    before = counts(db)
    with pytest.raises(Invalid) as err:
        run(db, (json.dumps(good) + "\n" + json.dumps(line) + "\n").encode(), kind)
    assert f"line 2: {message}" in err.value.message
    assert "line 1" not in err.value.message
    assert counts(db) == before


def test_a_conversation_over_the_prompt_limit_is_refused(db):
    long = [user("x" * 60_000), bot("ok"), user("y" * 40_000)]
    with pytest.raises(
        Invalid, match=r"line 1: prompt: is longer than 100,000 characters \(100,\d+\) as one text"
    ):
        run(db, jsonl({"prompt": long}), ImportKind.prompts)
