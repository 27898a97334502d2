"""Shapes of ranking tasks, submissions and skips, shared by the pages and the JSON API."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.annotation.tiers import MAX_CANDIDATES
from app.errors import Invalid
from app.text import SKIP_REASON_CHARS, AnyText

FLAG_VALUES = ("unsafe", "incorrect")
MAX_SKIP_REASON_CHARS = SKIP_REASON_CHARS
# A candidate id or a rank as a form or a flags key writes it: ASCII digits only (str.isdigit also takes
# "²", which int() refuses) and short enough that int() is cheap and the value fits PostgreSQL's bigint.
_CANDIDATE_ID = re.compile(r"[0-9]{1,18}")
_RANK = re.compile(r"[0-9]{1,6}")
# Far above any real time on one task; only stops nonsense numbers from skewing timing statistics.
MAX_SECONDS_SPENT = 7 * 24 * 3600


class CandidateOut(BaseModel):
    id: int
    text: str
    truncated: bool = Field(
        default=False, description="the reply was cut off at the generation's length limit"
    )


class MessageOut(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class TaskOut(BaseModel):
    """One leased ranking task; candidates in the order shown to this annotator."""

    assignment_id: int
    project_id: int = Field(description="the project the task belongs to")
    flag_types: list[str] = Field(description="the flags this project's annotators can set on a candidate")
    prompt: str = Field(
        description='the prompt\'s text; a conversation flattened ("User: ...", "Assistant: ...")'
    )
    messages: list[MessageOut] | None = Field(
        default=None,
        description="the conversation when the prompt is one (system, earlier turns, ending with the "
        "user's); the candidates are the assistant's next turn. null for a plain prompt",
    )
    candidates: list[CandidateOut]
    lease_expires_at: dt.datetime


class RankingIn(BaseModel):
    """A ranking: tiers of candidate ids, best first; several ids in one tier are a tie."""

    model_config = ConfigDict(extra="forbid")

    assignment_id: int
    tiers: list[Annotated[list[int], Field(max_length=MAX_CANDIDATES)]] = Field(max_length=MAX_CANDIDATES)
    all_bad: bool = False
    flags: dict[str, list[str]] = Field(
        default_factory=dict,
        max_length=MAX_CANDIDATES,
        description='per candidate id, a subset of ["unsafe", "incorrect"]',
    )
    rationale: AnyText = ""
    seconds_spent: float | None = Field(
        default=None, description="time the annotator spent; the lease age when omitted"
    )


class RankingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    assignment_id: int
    set_id: int
    tiers: list[list[int]]
    all_bad: bool
    flags: dict[str, list[str]]
    rationale: str
    display_order: list[int]
    seconds_spent: float | None = Field(description="the time the client reported, if any")
    server_seconds: float | None = Field(
        default=None, description="the time the server measured: task handed out to ranking stored"
    )
    source: str
    created_at: dt.datetime


class SkipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: AnyText = Field(
        description=f"why the task is skipped; required, at most {MAX_SKIP_REASON_CHARS} chars"
    )


class SkipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    assignment_id: int
    reason: str
    created_at: dt.datetime


def candidate_key(key: str) -> int | None:
    """The candidate id a flags key or a form field names ("26", " 26 "), or None if it names none."""
    key = key.strip()
    return int(key) if _CANDIDATE_ID.fullmatch(key) else None


def _split_pair(value: str, what: str) -> tuple[int, str]:
    cid, sep, rest = value.partition(":")
    number = candidate_key(cid)
    if not sep or number is None:
        raise Invalid(f"{what}: malformed field {value[:40]!r}; expected '<candidate id>:<value>'")
    return number, rest.strip()


def ranking_from_form(
    assignment_id: int,
    rank: list[str],
    flag: list[str],
    all_bad: bool,
    rationale: str,
    seconds_spent: float | None,
) -> RankingIn:
    """Turn the ranking form ("<candidate id>:<rank>" and "<candidate id>:<flag>" fields) into a RankingIn.

    Equal rank numbers are a tie; gaps do not matter (1, 1, 3 is the same as 1, 1, 2).
    """
    by_rank: dict[int, list[int]] = {}
    for value in rank:
        cid, number = _split_pair(value, "rank")
        if number == "":
            continue  # left unranked; validation names the candidate
        if not _RANK.fullmatch(number):
            raise Invalid(f"rank: must be a whole number from 1 to 999999, got {number[:10]!r}")
        by_rank.setdefault(int(number), []).append(cid)
    flags: dict[str, list[str]] = {}
    for value in flag:
        cid, name = _split_pair(value, "flag")
        flags.setdefault(str(cid), []).append(name)
    data: dict[str, Any] = {
        "assignment_id": assignment_id,
        "tiers": [by_rank[r] for r in sorted(by_rank)],
        "all_bad": all_bad,
        "flags": flags,
        "rationale": rationale,
        "seconds_spent": seconds_spent,
    }
    try:
        return RankingIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid(f"{where}: {first['msg']}") from exc


class SetMemberOut(BaseModel):
    candidate_id: int
    model_version: str
    text: str
    reward_score: float | None = Field(
        description="the reward model's score of this candidate when the set was made (selection_scores)"
    )


class SetDetailOut(BaseModel):
    id: int
    project_id: int
    prompt_id: int
    prompt: str
    status: str
    overlap: int
    submitted: int
    source: str
    created_at: dt.datetime
    selection: str = Field(
        description="how the set was chosen: random or uncertainty (the round's `selection`); empty for sets "
        "not made by the worker's generation (imports)"
    )
    selection_priority: float = Field(
        description="hand-out priority from active selection, after the prompt set's and the prompt's; "
        "0 unless chosen by uncertainty"
    )
    selection_scores: dict[str, Any] = Field(
        description="the newest reward model's scores of the candidates (set order), their uncertainty "
        "(mean pairwise 4p(1-p), 1 = all equal) and spread, the reward version and, for uncertainty "
        "selection, the pick: uncertain or random (the coverage share)"
    )
    candidates: list[SetMemberOut]
