"""app.conversation: the rule for a message list, a single user turn as a plain prompt, the flattened text."""

from __future__ import annotations

import pytest

from app.conversation import (
    ConversationError,
    Message,
    as_prompt,
    check_prompt,
    flatten,
    from_stored,
    parse_messages,
    stored_messages,
    to_messages,
)
from app.errors import Invalid

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]


def test_a_conversation_round_trips_through_storage_and_flattens():
    prompt = check_prompt(CHAT)
    assert prompt == tuple(Message(m["role"], m["content"]) for m in CHAT)
    assert flatten(prompt) == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: 2+2?"
    assert to_messages(prompt) == stored_messages(prompt) == CHAT
    assert from_stored(flatten(prompt), stored_messages(prompt)) == prompt
    assert hash(prompt) == hash(check_prompt([dict(m) for m in CHAT]))


def test_one_user_turn_is_a_plain_prompt():
    assert check_prompt([{"role": "user", "content": "Hi"}]) == "Hi"
    assert stored_messages("Hi") is None and to_messages("Hi") == [{"role": "user", "content": "Hi"}]
    assert from_stored("Hi", None) == "Hi"
    # A system turn makes it a conversation.
    assert isinstance(as_prompt((Message("system", "s"), Message("user", "u"))), tuple)


@pytest.mark.parametrize(
    ("value", "where", "problem"),
    [
        ("nope", "", "must be a text or a non-empty list of messages"),
        ([], "", "must be a text or a non-empty list of messages"),
        ([["user", "x"]], "0", 'must be an object with "role" and "content"'),
        ([{"role": "tool", "content": "x"}], "0.role", "must be system, user or assistant (got 'tool')"),
        ([{"content": "x"}], "0.role", "must be system, user or assistant"),
        ([{"role": "user", "content": 3}], "0.content", "must be a text"),
        ([{"role": "user", "content": "\u200b"}], "0.content", "must not be blank"),
        ([{"role": "user", "content": "a\ud83d"}], "0.content", "character 2 is a lone surrogate"),
        (
            [{"role": "assistant", "content": "x"}],
            "0.role",
            "the last turn must be the user's (got assistant)",
        ),
    ],
)
def test_the_rule_names_the_turn(value, where, problem):
    with pytest.raises(ConversationError) as err:
        parse_messages(value)
    assert err.value.at == where and err.value.problem.startswith(problem)


def test_check_prompt_names_the_field():
    with pytest.raises(Invalid, match=r"^prompt\.1\.content: must not be blank$"):
        check_prompt([{"role": "user", "content": "a"}, {"role": "user", "content": " "}])
    with pytest.raises(Invalid, match=r"^prompt: must not be blank$"):
        check_prompt("  ")
