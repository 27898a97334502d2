"""Open-Assistant message trees (one per JSONL line): every group of two or more ranked sibling assistant
replies becomes a ranked record whose prompt is the conversation so far (see app.prompts.importers).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from app.annotation.tiers import MAX_CANDIDATES, MIN_CANDIDATES
from app.conversation import Message, PromptLike, as_prompt
from app.prompts.importers.records import LineError, Record, check_group, validate
from app.prompts.schemas import OAMessage, OATree
from app.text import is_blank

OASST_MODEL = "oasst-human"


def parse_oasst(number: int, obj: dict[str, Any], left_out: list[int]) -> list[Record]:
    if not isinstance(obj.get("prompt"), dict) and {"text", "role"} <= obj.keys():
        # A bare message tree without the export wrapper.
        obj = {"prompt": obj}
    if not isinstance(obj.get("prompt"), dict):
        raise LineError("prompt: not an Open-Assistant message tree (expected an object with text and role)")
    tree = validate(OATree, obj)
    if is_blank(tree.prompt.text):
        raise LineError("prompt.text: must not be blank (the root message is the prompt)")
    records: list[Record] = []
    for path, group in _ranked_groups(tree.prompt, [], left_out):
        if len(group) > MAX_CANDIDATES:
            where = path[-1].message_id or "a message"
            raise LineError(f"{len(group)} ranked replies to {where}; a group takes at most {MAX_CANDIDATES}")
        check_group([r.text for r in group])
        records.append(
            Record(
                line=number,
                prompt=conversation_prompt(path),
                completions=[r.text for r in group],
                tiers=_tiers_from_ranks([r.rank for r in group if r.rank is not None]),
                model=OASST_MODEL,
                source="oasst",
                completion_meta=[
                    {"source": "oasst", "message_tree_id": tree.message_tree_id, "message_id": r.message_id}
                    for r in group
                ],
            )
        )
    return records


def _ranked_groups(
    message: OAMessage, before: list[OAMessage], left_out: list[int]
) -> Iterator[tuple[list[OAMessage], list[OAMessage]]]:
    """(conversation so far, its ranked replies) for each prompter message with two or more of them.

    A blank reply is left out and counted, with everything below it: it is no candidate, and no later
    turn's conversation can contain it.
    """
    path = [*before, message]
    replies = [r for r in message.replies if not r.deleted]
    blank = [r for r in replies if is_blank(r.text)]
    left_out[0] += len(blank)
    replies = [r for r in replies if not is_blank(r.text)]
    if message.role == "prompter":
        ranked = [r for r in replies if r.role == "assistant" and r.rank is not None]
        if len(ranked) >= MIN_CANDIDATES:
            yield path, ranked
    for reply in replies:
        yield from _ranked_groups(reply, path, left_out)


def _tiers_from_ranks(ranks: Sequence[int]) -> list[list[int]]:
    return [[i for i, r in enumerate(ranks) if r == value] for value in sorted(set(ranks))]


def conversation_prompt(path: Sequence[OAMessage]) -> PromptLike:
    """The prompt for replies to the last message: the conversation so far, roles intact (a prompter is
    the user), or the root's text alone."""
    turns = [Message("user" if m.role == "prompter" else "assistant", m.text) for m in path]
    try:
        return as_prompt(turns)
    except ValueError as exc:
        raise LineError(f"the conversation before {path[-1].message_id or 'a reply'} {exc}") from exc
