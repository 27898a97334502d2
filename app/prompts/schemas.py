"""Import formats (one pydantic model per line format) and the import summary."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NonBlank = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]


class ImportKind(enum.StrEnum):
    prompts = "prompts"
    pairs = "pairs"
    ranked_groups = "ranked-groups"
    # An alias of ranked-groups that insists on the Open-Assistant tree format.
    oasst = "oasst"
    # {"prompt","completion"} lines: human-written answers for the supervised (SFT) stage.
    demonstrations = "demonstrations"


class _Line(BaseModel):
    # strict: "1" is not an index and true is not a number; unknown keys are ignored so that richer
    # files (our own exports, TRL datasets with extra columns) import as they are.
    model_config = ConfigDict(strict=True, extra="ignore")


class PromptLine(_Line):
    prompt: NonBlank
    tags: list[Tag] = Field(default_factory=list)


class PairLine(_Line):
    """A TRL preference pair (standard format, texts)."""

    prompt: NonBlank
    chosen: NonBlank
    rejected: NonBlank
    tags: list[Tag] = Field(default_factory=list)
    model: ModelName | None = None


class RankedGroupLine(_Line):
    """Completions of one prompt; `ranking` is tiers of indexes into `completions`, best first."""

    prompt: NonBlank
    completions: list[NonBlank]
    ranking: list[list[int]] | None = None
    tags: list[Tag] = Field(default_factory=list)
    model: ModelName | None = None


class OAMessage(_Line):
    """One message of an Open-Assistant conversation tree."""

    text: str
    role: Literal["prompter", "assistant"]
    replies: list[OAMessage] = Field(default_factory=list)
    rank: int | None = None
    deleted: bool = False
    message_id: str | None = None


class OATree(_Line):
    prompt: OAMessage
    message_tree_id: str | None = None


class DemonstrationLine(_Line):
    """One demonstration: a prompt and the reply a person wrote for it (JSONL `{"prompt","completion"}`)."""

    prompt: str = Field(min_length=1, max_length=100_000, pattern=r"\S")
    completion: str = Field(min_length=1, max_length=100_000, pattern=r"\S")


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


class DemonstrationSummary(BaseModel):
    """What a demonstrations import stored (the `rankloop import-demonstrations` report)."""

    prompt_set: str
    lines: int = Field(description="demonstrations read")
    prompts: int = Field(description="prompts created (a prompt already in the set is reused)")
    demonstrations: int = Field(description="demonstrations stored")
    duplicates: int = Field(description="lines skipped because the same demonstration exists")
