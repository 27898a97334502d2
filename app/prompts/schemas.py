"""Import formats (one pydantic model per line format) and the import summary."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.conversation import PromptInput, ReplyInput
from app.text import CompletionText, IdLine, MessageText, NameLine, PromptText, TagLine


class ImportKind(enum.StrEnum):
    prompts = "prompts"
    pairs = "pairs"
    ranked_groups = "ranked-groups"
    # An alias of ranked-groups that insists on the Open-Assistant tree format.
    oasst = "oasst"
    # {"prompt","completion"} lines: human-written answers for the supervised (SFT) stage.
    demonstrations = "demonstrations"
    # Ranked groups (any ranked-groups format) whose ranking is known: each becomes an open gold set
    # (app.annotation.gold), handed out blind to score annotators, never trained on.
    gold = "gold"


class _Line(BaseModel):
    # strict: "1" is not an index and true is not a number; unknown keys are ignored so that richer
    # files (our own exports, TRL datasets with extra columns) import as they are.
    model_config = ConfigDict(strict=True, extra="ignore")


class PromptLine(_Line):
    """A prompt: a text, or a conversation (TRL's prompt-only conversational format)."""

    prompt: PromptInput
    tags: list[TagLine] = Field(default_factory=list)


class PairLine(_Line):
    """A TRL preference pair: standard (texts) or conversational (message lists), the prompt explicit or,
    for conversations, implicit (the turns `chosen` and `rejected` share)."""

    prompt: PromptInput | None = None
    chosen: ReplyInput
    rejected: ReplyInput
    tags: list[TagLine] = Field(default_factory=list)
    model: NameLine | None = None


class RankedGroupLine(_Line):
    """Completions of one prompt (a text or a conversation); `ranking` is tiers of indexes into
    `completions`, best first."""

    prompt: PromptInput
    completions: list[CompletionText]
    ranking: list[list[int]] | None = None
    tags: list[TagLine] = Field(default_factory=list)
    model: NameLine | None = None


class ExportedPrompt(_Line):
    text: PromptText
    # The conversation (rankloop's rankings export writes it for every prompt, one user turn for a text).
    messages: PromptInput | None = None
    tags: list[TagLine] = Field(default_factory=list)


class ExportedCandidate(_Line):
    id: int
    text: CompletionText
    model_version: NameLine


class ExportedRankingLine(_Line):
    """A line of rankloop's own rankings export (rankings.jsonl): tiers of candidate ids, best first."""

    prompt: ExportedPrompt
    candidates: list[ExportedCandidate]
    tiers: list[list[int]]
    all_bad: bool = False


class OAMessage(_Line):
    """One message of an Open-Assistant conversation tree.

    Its text may be blank here: the importer leaves a blank reply out (and counts it) rather than refusing
    a whole tree over it; a blank root is refused there.
    """

    text: MessageText
    role: Literal["prompter", "assistant"]
    replies: list[OAMessage] = Field(default_factory=list)
    rank: int | None = None
    deleted: bool = False
    message_id: IdLine | None = None


class OATree(_Line):
    prompt: OAMessage
    message_tree_id: IdLine | None = None


class DemonstrationLine(_Line):
    """One demonstration: a prompt and the reply a person wrote for it (JSONL `{"prompt","completion"}`,
    TRL's prompt-completion format: texts, or a conversation and a one-message assistant reply)."""

    prompt: PromptInput
    completion: ReplyInput


class ImportSummary(BaseModel):
    """What an import created."""

    prompt_set: str = Field(description="the prompt set the prompts belong to")
    records: int = Field(description="records read: lines, or ranked groups for Open-Assistant trees")
    prompts: int = Field(description="prompts created (a prompt already in the set is reused)")
    candidates: int = Field(description="candidates created")
    sets: int = Field(description="comparison sets created")
    rankings: int = Field(description='rankings created, by the "imported" annotator')
    duplicates: int = Field(description="records skipped because the same set (and ranking) already exists")
    prompt_set_id: int | None = Field(default=None, description="the prompt set's id")
    waiting_for_candidates: int = Field(
        default=0,
        description="prompts of the set in no comparison set: no annotator sees them until a generation "
        "job writes candidates (POST /api/v1/generations with this prompt_set_id)",
    )
    conflicts: int = Field(
        default=0,
        description="rankings kept that judge the same candidates differently from another ranking of the "
        "file or of an earlier import (e.g. two judges disagreeing: A>B and B>A); each is its own set",
    )
    left_out: int = Field(
        default=0,
        description="Open-Assistant replies left out because their text is blank (with their replies)",
    )
    gold: int = Field(
        default=0, description="gold sets created (kind gold: the known ranking, no ranking row)"
    )


class DemonstrationSummary(BaseModel):
    """What a demonstrations import stored (the `rankloop import-demonstrations` report)."""

    prompt_set: str
    lines: int = Field(description="demonstrations read")
    prompts: int = Field(description="prompts created (a prompt already in the set is reused)")
    demonstrations: int = Field(description="demonstrations stored")
    duplicates: int = Field(description="lines skipped because the same demonstration exists")
