"""One pydantic model per exported JSONL line."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, Field


class ExportFormat(enum.StrEnum):
    """TRL's two dataset formats: texts, or message lists (`{"role", "content"}`)."""

    standard = "standard"
    conversational = "conversational"


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ExportedPrompt(BaseModel):
    id: int
    text: str = Field(description='the prompt; a conversation flattened ("User: ...", "Assistant: ...")')
    messages: list[Message] = Field(
        description="the prompt as TRL's conversational prompt: every turn, ending with the user's "
        "(a plain prompt is one user turn)"
    )
    tags: list[str]
    prompt_set: str


class ExportedCandidate(BaseModel):
    id: int
    text: str
    model_version_id: int
    model_version: str = Field(description="model version name")
    hidden: bool


class RankingRecord(BaseModel):
    """One ranking with everything needed to use it without the database (rankings.jsonl)."""

    ranking_id: int
    set_id: int
    prompt: ExportedPrompt
    candidates: list[ExportedCandidate] = Field(description="the comparison set, in set order")
    tiers: list[list[int]] = Field(description="candidate ids, best tier first; a tier of several is a tie")
    all_bad: bool
    flags: dict[str, Any] = Field(description='{"<candidate id>": ["unsafe", ...]}')
    rationale: str
    annotator_id: int
    display_order: list[int] = Field(description="candidate ids in the order the annotator saw them")
    seconds_spent: float | None = Field(description="the time the client reported (null: none reported)")
    server_seconds: float | None = Field(
        default=None,
        description="the time the server measured, from the task handed out to the ranking stored "
        "(null for imported rankings)",
    )
    created_at: dt.datetime
    source: str = Field(description='"web", "api", "import", ...')


class PreferencePair(BaseModel):
    """A TRL preference pair (standard format) with ids to trace it back (pairs.jsonl)."""

    prompt: str = Field(description='the prompt; a conversation flattened ("User: ...", "Assistant: ...")')
    chosen: str
    rejected: str
    margin: int = Field(description="tier distance between chosen and rejected: 1 for neighbours")
    ranking_id: int
    set_id: int
    prompt_id: int
    chosen_id: int
    rejected_id: int
    annotator_id: int


class ConversationalPreferencePair(BaseModel):
    """A TRL preference pair in the conversational format (pairs.jsonl with format=conversational): the
    prompt's turns, and each reply as one assistant message."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    margin: int = Field(description="tier distance between chosen and rejected: 1 for neighbours")
    ranking_id: int
    set_id: int
    prompt_id: int
    chosen_id: int
    rejected_id: int
    annotator_id: int
