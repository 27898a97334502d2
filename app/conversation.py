"""Conversations: a prompt that is a chat, in TRL's conversational format.

A conversation is a list of `{"role": "system" | "user" | "assistant", "content": str}` ending with a user
turn: the candidates are the next assistant turn. It is stored on the prompt as it came (Prompt.messages),
beside a flattened text (Prompt.text: "System: ...\\n\\nUser: ...\\n\\nAssistant: ...\\n\\nUser: ...") that
search, the admin pages, the standard (string) exports and older clients read. A conversation of one user
turn is a plain prompt: its text is that turn, and nothing else is stored.

The worker formats a `PromptLike` (a plain text or a `Conversation`) with the model's chat template
(worker/models.py); both are immutable and hashable, so they key dicts and sets like the texts did.

The rule for a conversation (on top of app.text's rule for each content, blank refused): a non-empty list,
every turn an object with a known role and a string content, the last turn the user's, and the flattened
text within the prompt limit. Problems are reported as "<field>.<turn>.<key>: <problem>", turns from 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError, PydanticKnownError

from app.errors import Invalid
from app.text import COMPLETION_CHARS, PROMPT_CHARS, text_problem

ROLES = ("system", "user", "assistant")
_SPEAKER = {"system": "System", "user": "User", "assistant": "Assistant"}


class Message(NamedTuple):
    role: str
    content: str


Conversation = tuple[Message, ...]
# What the worker formats: a plain prompt or a conversation.
PromptLike = str | Conversation


class ConversationError(ValueError):
    """A conversation that breaks the rule; `at` is where ("2.content", "" for the whole list)."""

    def __init__(self, at: str, problem: str) -> None:
        super().__init__(f"{at}: {problem}" if at else problem)
        self.at = at
        self.problem = problem


def parse_messages(value: object, *, final: str | None = "user") -> Conversation:
    """The turns of a JSON message list under the rule, or ConversationError naming the bad turn.

    `final` is the role the last turn must have: "user" for a prompt, "assistant" for a reply given as
    messages (TRL's chosen/rejected), None for a whole exchange that is split afterwards."""
    if not isinstance(value, list) or not value:
        raise ConversationError("", "must be a text or a non-empty list of messages")
    turns: list[Message] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConversationError(str(index), 'must be an object with "role" and "content"')
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            got = f" (got {role!r})" if isinstance(role, str) else ""
            raise ConversationError(f"{index}.role", f"must be system, user or assistant{got}")
        if not isinstance(content, str):
            raise ConversationError(f"{index}.content", "must be a text")
        problem = text_problem(content, blank_ok=False, max_chars=PROMPT_CHARS)
        if problem:
            raise ConversationError(f"{index}.content", problem)
        turns.append(Message(role, content))
    if final is not None and turns[-1].role != final:
        raise ConversationError(
            f"{len(turns) - 1}.role", f"the last turn must be the {final}'s (got {turns[-1].role})"
        )
    return tuple(turns)


def as_prompt(turns: Sequence[Message]) -> PromptLike:
    """The prompt these turns make: the text alone for a single user turn, else the conversation.

    Raises ConversationError when the flattened text is over the prompt limit."""
    prompt: PromptLike = turns[0].content if len(turns) == 1 and turns[0].role == "user" else tuple(turns)
    size = len(flatten(prompt))
    if size > PROMPT_CHARS:
        raise ConversationError("", f"is longer than {PROMPT_CHARS:,} characters ({size:,}) as one text")
    return prompt


def flatten(prompt: PromptLike) -> str:
    """The prompt as one text: the text itself, or each turn as "Speaker: content", blank-line separated."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{_SPEAKER[m.role]}: {m.content}" for m in prompt)


def to_messages(prompt: PromptLike) -> list[dict[str, str]]:
    """TRL's conversational form: a plain prompt is one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m.role, "content": m.content} for m in prompt]


def stored_messages(prompt: PromptLike) -> list[dict[str, str]] | None:
    """What Prompt.messages holds: the turns of a conversation, None for a plain prompt."""
    return None if isinstance(prompt, str) else to_messages(prompt)


def from_stored(text: str, messages: Sequence[dict[str, Any]] | None) -> PromptLike:
    """The prompt a stored row means (Prompt.text and Prompt.messages)."""
    if not messages:
        return text
    return tuple(Message(str(m["role"]), str(m["content"])) for m in messages)


def turns_of(prompt: PromptLike) -> Conversation:
    """The conversation's turns (a plain prompt is one user turn)."""
    return (Message("user", prompt),) if isinstance(prompt, str) else prompt


def check_prompt(value: object, field: str = "prompt") -> PromptLike:
    """A prompt given as a text or a message list, under the rule; Invalid names the field and turn."""
    if isinstance(value, str):
        problem = text_problem(value, blank_ok=False, max_chars=PROMPT_CHARS)
        if problem:
            raise Invalid(f"{field}: {problem}")
        return value
    try:
        return as_prompt(parse_messages(value))
    except ConversationError as exc:
        raise Invalid(f"{field}.{exc.at}: {exc.problem}" if exc.at else f"{field}: {exc.problem}") from exc


def _text_value(value: str, max_chars: int) -> str:
    """app.text's rule for a text field, worded as for the plain text fields (PromptText and friends)."""
    problem = text_problem(value, blank_ok=False)
    if problem:
        raise PydanticCustomError("text_rule", problem)
    if len(value) > max_chars:
        raise PydanticKnownError("string_too_long", {"max_length": max_chars})
    return value


def _prompt_value(value: object) -> PromptLike:
    if isinstance(value, str):
        return _text_value(value, PROMPT_CHARS)
    try:
        return as_prompt(parse_messages(value))
    except ConversationError as exc:
        # The turn goes in the context: the importers add it to the field's location ("prompt.2.content").
        raise PydanticCustomError(
            "conversation", "{problem}", {"at": exc.at, "problem": exc.problem}
        ) from exc


def _reply_value(value: object) -> str | Conversation:
    if isinstance(value, str):
        return _text_value(value, COMPLETION_CHARS)
    try:
        return parse_messages(value, final=None)
    except ConversationError as exc:
        raise PydanticCustomError(
            "conversation", "{problem}", {"at": exc.at, "problem": exc.problem}
        ) from exc


# A prompt field of an import line: a text or a message list, checked as above (pydantic field type).
PromptInput = Annotated[Any, AfterValidator(_prompt_value)]
# A chosen/rejected field: a text, or a message list (any last role: the importer splits it).
ReplyInput = Annotated[Any, AfterValidator(_reply_value)]
