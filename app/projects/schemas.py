"""The API's shapes for projects (validated by pydantic; the rules beyond shape are the service's)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FLAG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
MAX_FLAG_TYPES = 12
GUIDELINES_CHARS = 50_000


class ProjectFields(BaseModel):
    """Every field a project has besides its name; None on a change means "leave as it is"."""

    model_config = ConfigDict(extra="forbid")

    guidelines: str | None = Field(
        default=None, max_length=GUIDELINES_CHARS, description="Markdown shown in the ranking page's panel"
    )
    flag_types: list[str] | None = Field(
        default=None,
        max_length=MAX_FLAG_TYPES,
        description="the flags annotators can set on a candidate (lowercase words, e.g. unsafe, incorrect)",
    )
    k_min: int | None = Field(default=None, ge=2, le=9, description="fewest candidates per new set")
    k_max: int | None = Field(default=None, ge=2, le=9, description="most candidates per new set")
    overlap: int | None = Field(default=None, ge=1, le=20, description="annotators wanted per set")
    lease_minutes: int | None = Field(default=None, ge=1, le=24 * 60, description="how long a task is held")
    gold_rate: float | None = Field(
        default=None, ge=0, le=1, description="share of hand-outs that are gold sets (blind; see /admin/gold)"
    )
    base_model: str | None = Field(default=None, max_length=500, description="HF model id or local path")
    round_defaults: dict[str, Any] | None = Field(
        default=None, description="round config keys every round of the project starts from"
    )
    schedule_min_rankings: int | None = Field(
        default=None, ge=0, description="start a round after this many new rankings (0: not by count)"
    )
    schedule_cron: str | None = Field(
        default=None, max_length=100, description='start a round at these times, e.g. "0 3 * * 1" (weekly)'
    )


class ProjectIn(ProjectFields):
    name: str = Field(min_length=1, max_length=100)


class ProjectPatch(ProjectFields):
    name: str | None = Field(default=None, min_length=1, max_length=100)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    guidelines: str
    flag_types: list[str]
    k_min: int | None
    k_max: int | None
    overlap: int | None
    lease_minutes: int | None
    gold_rate: float | None
    base_model: str | None
    round_defaults: dict[str, Any]
    schedule_min_rankings: int | None
    schedule_cron: str | None
    is_default: bool
    created_at: dt.datetime


class ProjectList(BaseModel):
    projects: list[ProjectOut]


class MemberList(BaseModel):
    user_ids: list[int]
