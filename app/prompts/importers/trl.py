"""TRL's dataset shapes: a reply given as one assistant message, and the prompt of a preference pair,
explicit or implicit (the turns chosen and rejected share, as TRL's `maybe_extract_prompt` reads them).
"""

from __future__ import annotations

from app.conversation import Conversation, PromptLike, as_prompt
from app.prompts.importers.records import LineError


def reply(field: str, value: str | Conversation) -> str:
    """A reply given as a text, or as TRL's one assistant message."""
    if isinstance(value, str):
        return value
    if not value:
        raise LineError(f"{field}: no reply after the prompt")
    if len(value) != 1 or value[0].role != "assistant":
        roles = ", ".join(m.role for m in value)
        raise LineError(f"{field}: a reply is one assistant message (got {roles})")
    return value[0].content


def pair_texts(
    prompt: PromptLike | None,
    chosen: str | Conversation,
    rejected: str | Conversation,
    prompt_as_messages: bool,
) -> tuple[PromptLike, str, str]:
    """(prompt, chosen, rejected) of a TRL preference line; without an explicit prompt (or with a text
    prompt beside message lists, as TRL's maybe_extract_prompt reads it) the prompt is the turns that
    chosen and rejected share. `prompt_as_messages`: the line gave its prompt as a message list (or none)."""
    both_lists = not isinstance(chosen, str) and not isinstance(rejected, str)
    explicit = prompt is not None and (not both_lists or prompt_as_messages)
    if explicit:
        assert prompt is not None
        return prompt, reply("chosen", chosen), reply("rejected", rejected)
    if isinstance(chosen, str) or isinstance(rejected, str):
        raise LineError("prompt: missing (an implicit prompt needs chosen and rejected as message lists)")
    if chosen == rejected:
        raise LineError("chosen and rejected are the same conversation")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0 or chosen[shared - 1].role != "user":
        raise LineError(
            "prompt: chosen and rejected must share the conversation up to a user turn (the implicit prompt)"
        )
    try:
        implicit = as_prompt(chosen[:shared])
    except ValueError as exc:
        raise LineError(f"prompt: {exc}") from exc
    return implicit, reply("chosen", chosen[shared:]), reply("rejected", rejected[shared:])
