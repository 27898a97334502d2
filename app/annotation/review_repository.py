"""Queries for reviewing stored annotations on the admin pages: the rankings browser, the flagged-candidate
queue, and the candidates of sets in set order with their model version.

The annotation task flow's queries (leases, submissions, skips) are in repository.py; counts of
annotation activity (per day, per annotator, open work) in activity_repository.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.orm import (
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    User,
)

# --- rankings browser -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankingFilter:
    annotator_id: int | None = None
    prompt_set_id: int | None = None
    flag: str | None = None  # "any", "none", or a flag value
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    status: str = "live"  # live, dropped, all


def _ranking_conditions(f: RankingFilter) -> list[Any]:
    conditions: list[Any] = []
    if f.annotator_id is not None:
        conditions.append(Ranking.annotator_id == f.annotator_id)
    if f.prompt_set_id is not None:
        conditions.append(Prompt.prompt_set_id == f.prompt_set_id)
    if f.flag == "any":
        conditions.append(Ranking.flags != text("'{}'::jsonb"))
    elif f.flag == "none":
        conditions.append(Ranking.flags == text("'{}'::jsonb"))
    elif f.flag:
        conditions.append(
            func.jsonb_path_exists(
                Ranking.flags,
                text("'$.*[*] ? (@ == $flag)'::jsonpath"),
                func.jsonb_build_object("flag", f.flag),
            )
        )
    if f.since is not None:
        conditions.append(Ranking.created_at >= f.since)
    if f.until is not None:
        conditions.append(Ranking.created_at < f.until)
    if f.status == "live":
        conditions.append(Ranking.dropped.is_(False))
    elif f.status == "dropped":
        conditions.append(Ranking.dropped.is_(True))
    return conditions


@dataclass(frozen=True)
class RankingRow:
    id: int
    set_id: int
    annotator_id: int
    annotator: str
    prompt_set: str
    prompt: str
    tiers: list[list[int]]
    all_bad: bool
    flags: dict[str, list[str]]
    rationale: str
    # Candidate ids in the order this annotator saw them (the task page's letters A, B, ... follow it).
    display_order: list[int]
    seconds_spent: float | None  # the client's claim
    server_seconds: float | None  # measured by the server: lease handed out -> stored
    source: str
    dropped: bool
    created_at: dt.datetime


def _ranking_rows_stmt() -> Any:
    return (
        select(
            Ranking.id,
            Ranking.set_id,
            Ranking.annotator_id,
            User.username,
            PromptSet.name,
            Prompt.text,
            Ranking.tiers,
            Ranking.all_bad,
            Ranking.flags,
            Ranking.rationale,
            Ranking.display_order,
            Ranking.seconds_spent,
            Ranking.server_seconds,
            Ranking.source,
            Ranking.dropped,
            Ranking.created_at,
        )
        .join(User, User.id == Ranking.annotator_id)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
    )


def count_rankings(session: Session, f: RankingFilter) -> int:
    """How many rankings match the filter."""
    stmt = (
        select(func.count())
        .select_from(Ranking)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(*_ranking_conditions(f))
    )
    return int(session.scalar(stmt) or 0)


def rankings(session: Session, f: RankingFilter, limit: int, offset: int) -> list[RankingRow]:
    """Rankings matching the filter, newest first, with annotator, prompt set and prompt."""
    stmt = (
        _ranking_rows_stmt()
        .where(*_ranking_conditions(f))
        .order_by(Ranking.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [RankingRow(*row) for row in session.execute(stmt)]


def annotator_options(session: Session) -> list[tuple[int, str]]:
    """(id, username) of everyone who ranked something, for the rankings filter."""
    ranked = select(Ranking.annotator_id).distinct().subquery()
    stmt = (
        select(User.id, User.username).join(ranked, ranked.c.annotator_id == User.id).order_by(User.username)
    )
    return [(int(i), str(n)) for i, n in session.execute(stmt)]


# --- flagged candidates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlaggedCandidate:
    candidate_id: int
    text: str
    version: str
    prompt: str
    flags: list[str]
    ranking_ids: list[int]
    annotators: list[str]
    last_flagged_at: dt.datetime


# Each (live ranking, flagged visible candidate, flag value); :flag NULL means any flag. Spliced into the
# queries below as {rows}: a constant, every value is a bound parameter.
_FLAG_ROWS = """
    SELECT r.id AS ranking_id, r.created_at, u.username, c.id AS candidate_id, f.flag
    FROM rankings r
    CROSS JOIN LATERAL jsonb_each(r.flags) AS e(candidate, flags)
    CROSS JOIN LATERAL jsonb_array_elements_text(e.flags) AS f(flag)
    JOIN candidates c ON c.id = e.candidate::int
    JOIN users u ON u.id = r.annotator_id
    WHERE NOT r.dropped AND r.flags <> '{}'::jsonb AND NOT c.hidden
      AND (CAST(:flag AS text) IS NULL OR f.flag = CAST(:flag AS text))
"""

_COUNT_FLAGGED = text(
    "SELECT count(DISTINCT candidate_id) FROM ({rows}) flagged".replace("{rows}", _FLAG_ROWS)
)

_FLAGGED_PAGE = text(
    """
    SELECT c.id, c.text, mv.name, p.text, fr.flags, fr.rankings, fr.annotators, fr.last_at
    FROM (
        SELECT candidate_id, array_agg(DISTINCT flag ORDER BY flag) AS flags,
               array_agg(DISTINCT ranking_id ORDER BY ranking_id) AS rankings,
               array_agg(DISTINCT username ORDER BY username) AS annotators, max(created_at) AS last_at
        FROM ({rows}) flagged
        GROUP BY candidate_id
        ORDER BY max(created_at) DESC, candidate_id DESC
        LIMIT :limit OFFSET :offset
    ) fr
    JOIN candidates c ON c.id = fr.candidate_id
    JOIN model_versions mv ON mv.id = c.model_version_id
    JOIN prompts p ON p.id = c.prompt_id
    ORDER BY fr.last_at DESC, c.id DESC
    """.replace("{rows}", _FLAG_ROWS)
)


def count_flagged_candidates(session: Session, flag: str | None) -> int:
    """Visible candidates flagged in a live ranking (optionally with one flag value)."""
    return int(session.execute(_COUNT_FLAGGED, {"flag": flag}).scalar_one())


def flagged_candidates(session: Session, flag: str | None, limit: int, offset: int) -> list[FlaggedCandidate]:
    """The moderation queue: visible flagged candidates, most recently flagged first."""
    rows = session.execute(_FLAGGED_PAGE, {"flag": flag, "limit": limit, "offset": offset})
    return [
        FlaggedCandidate(int(cid), str(t), str(v), str(p), list(fl), [int(i) for i in ids], list(us), last)
        for cid, t, v, p, fl, ids, us, last in rows
    ]


def flags_raised_by(session: Session, annotator_id: int, limit: int) -> list[RankingRow]:
    """An annotator's newest rankings that flag a candidate."""
    stmt = (
        _ranking_rows_stmt()
        .where(Ranking.annotator_id == annotator_id, Ranking.flags != text("'{}'::jsonb"))
        .order_by(Ranking.id.desc())
        .limit(limit)
    )
    return [RankingRow(*row) for row in session.execute(stmt)]


# --- candidates of sets, labelled -----------------------------------------------------------------------


@dataclass(frozen=True)
class SetMember:
    candidate: Candidate
    model_version: str


def set_members(session: Session, set_ids: Sequence[int]) -> dict[int, list[SetMember]]:
    """The candidates of these comparison sets, in set order, with their model version names."""
    rows = session.execute(
        select(ComparisonSetItem.set_id, Candidate, ModelVersion.name)
        .join(Candidate, Candidate.id == ComparisonSetItem.candidate_id)
        .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
        .where(ComparisonSetItem.set_id.in_(set_ids))
        .order_by(ComparisonSetItem.set_id, ComparisonSetItem.position)
    )
    members: dict[int, list[SetMember]] = {}
    for set_id, candidate, version in rows:
        members.setdefault(set_id, []).append(SetMember(candidate, version))
    return members


def prompts_of_sets(session: Session, set_ids: Sequence[int]) -> dict[int, str]:
    """Set id -> its prompt's text."""
    if not set_ids:
        return {}
    rows = session.execute(
        select(ComparisonSet.id, Prompt.text)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(ComparisonSet.id.in_(list(set_ids)))
    ).all()
    return {int(i): str(t) for i, t in rows}


def get_set(session: Session, set_id: int) -> tuple[ComparisonSet, Prompt] | None:
    """A comparison set with its prompt (the set detail), or None."""
    row = session.execute(
        select(ComparisonSet, Prompt)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(ComparisonSet.id == set_id)
    ).first()
    return (row[0], row[1]) if row else None
