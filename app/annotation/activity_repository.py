"""Counts of annotation activity for the admin pages: rankings per day, open work, per-annotator output.

Every count is over live (not dropped) rankings unless it says otherwise. The task flow's queries are in
repository.py; the rankings browser and moderation queue in review_repository.py.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from app.orm import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    Prompt,
    PromptSet,
    Ranking,
    SetStatus,
    Skip,
    User,
)


def _of_project(project_id: int | None) -> list[Any]:
    """Where-clauses that keep one project's rankings (none: every project's)."""
    if project_id is None:
        return []
    return [Ranking.set_id.in_(select(ComparisonSet.id).where(ComparisonSet.project_id == project_id))]


def count_sets(session: Session, status: SetStatus | None = None, project_id: int | None = None) -> int:
    """How many comparison sets there are (of one status, of one project)."""
    stmt = select(func.count()).select_from(ComparisonSet)
    if status is not None:
        stmt = stmt.where(ComparisonSet.status == status)
    if project_id is not None:
        stmt = stmt.where(ComparisonSet.project_id == project_id)
    return int(session.scalar(stmt) or 0)


def count_live_rankings(
    session: Session, since: dt.datetime | None = None, project_id: int | None = None
) -> int:
    """How many live rankings there are (stored after `since`, when given; of one project)."""
    stmt = (
        select(func.count()).select_from(Ranking).where(Ranking.dropped.is_(False), *_of_project(project_id))
    )
    if since is not None:
        stmt = stmt.where(Ranking.created_at > since)
    return int(session.scalar(stmt) or 0)


def rankings_per_day(
    session: Session, since: dt.date, project_id: int | None = None
) -> list[tuple[dt.date, int]]:
    """Live rankings per UTC day from `since` on (days without rankings are absent; of one project)."""
    day = func.date(func.timezone("UTC", Ranking.created_at))
    stmt = (
        select(day, func.count())
        .where(Ranking.dropped.is_(False), day >= since, *_of_project(project_id))
        .group_by(day)
        .order_by(day)
    )
    return [(d, int(n)) for d, n in session.execute(stmt)]


def active_annotators(session: Session, since: dt.datetime, project_id: int | None = None) -> int:
    """Distinct annotators with a live ranking since a moment (in one project)."""
    stmt = select(func.count(func.distinct(Ranking.annotator_id))).where(
        Ranking.dropped.is_(False), Ranking.created_at >= since, *_of_project(project_id)
    )
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True)
class OpenSets:
    sets: int  # open sets that still want rankings
    rankings_wanted: int  # sum over them of overlap - submitted
    paused: int  # of those, in paused prompt sets (not handed out)


def open_sets(session: Session, project_id: int | None = None) -> OpenSets:
    """Open comparison sets that still need rankings (of one project), and how many rankings they want."""
    submitted = (
        select(Assignment.set_id, func.count().label("done"))
        .where(Assignment.status == AssignmentStatus.submitted)
        .group_by(Assignment.set_id)
        .subquery()
    )
    wanted = ComparisonSet.overlap - func.coalesce(submitted.c.done, 0)
    stmt = (
        select(
            func.count(),
            func.coalesce(func.sum(wanted), 0),
            func.count().filter(PromptSet.paused.is_(True)),
        )
        .select_from(ComparisonSet)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .outerjoin(submitted, submitted.c.set_id == ComparisonSet.id)
        .where(ComparisonSet.status == SetStatus.open, wanted > 0)
    )
    if project_id is not None:
        stmt = stmt.where(ComparisonSet.project_id == project_id)
    sets, rankings, paused = session.execute(stmt).one()
    return OpenSets(int(sets), int(rankings), int(paused))


def candidate_counts_by_version(session: Session) -> dict[int, int]:
    """Model version id -> how many candidates it produced."""
    rows = session.execute(
        select(Candidate.model_version_id, func.count()).group_by(Candidate.model_version_id)
    )
    return {int(v): int(n) for v, n in rows}


# --- per annotator ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorRow:
    id: int
    username: str
    role: str
    active: bool
    rankings: int
    dropped: int
    skips: int
    flagged: int
    median_seconds: float | None  # measured by the server: lease handed out -> ranking stored
    median_client_seconds: float | None  # what the clients reported, an extra beside it
    last_ranked_at: dt.datetime | None


def _annotator_stats() -> Any:
    """Per user: live and dropped rankings, skips, flags raised, median seconds (server-measured and
    client-reported), last ranking."""
    ranked = (
        select(
            Ranking.annotator_id.label("annotator_id"),
            func.count().filter(Ranking.dropped.is_(False)).label("rankings"),
            func.count().filter(Ranking.dropped.is_(True)).label("dropped"),
            func.count()
            .filter(Ranking.dropped.is_(False), Ranking.flags != text("'{}'::jsonb"))
            .label("flagged"),
            func.percentile_cont(0.5)
            .within_group(Ranking.server_seconds)
            .filter(Ranking.dropped.is_(False))
            .label("median_seconds"),
            func.percentile_cont(0.5)
            .within_group(Ranking.seconds_spent)
            .filter(Ranking.dropped.is_(False))
            .label("median_client_seconds"),
            func.max(Ranking.created_at).label("last_ranked_at"),
        )
        .group_by(Ranking.annotator_id)
        .subquery()
    )
    skipped = select(Skip.annotator_id, func.count().label("skips")).group_by(Skip.annotator_id).subquery()
    return (
        select(
            User.id,
            User.username,
            User.role,
            User.active,
            func.coalesce(ranked.c.rankings, 0).label("rankings"),
            func.coalesce(ranked.c.dropped, 0).label("dropped"),
            func.coalesce(skipped.c.skips, 0).label("skips"),
            func.coalesce(ranked.c.flagged, 0).label("flagged"),
            ranked.c.median_seconds,
            ranked.c.median_client_seconds,
            ranked.c.last_ranked_at,
        )
        .outerjoin(ranked, ranked.c.annotator_id == User.id)
        .outerjoin(skipped, skipped.c.annotator_id == User.id)
        # Annotators, and anyone else who ranked or skipped (admins may rank too).
        .where(
            or_(
                User.role == "annotator",
                ranked.c.annotator_id.is_not(None),
                skipped.c.annotator_id.is_not(None),
            )
        )
    )


def _annotator_row(row: Any) -> AnnotatorRow:
    uid, name, role, active, rankings, dropped, skips, flagged, median, client_median, last = row
    return AnnotatorRow(
        id=int(uid),
        username=str(name),
        role=str(getattr(role, "value", role)),
        active=bool(active),
        rankings=int(rankings),
        dropped=int(dropped),
        skips=int(skips),
        flagged=int(flagged),
        median_seconds=float(median) if median is not None else None,
        median_client_seconds=float(client_median) if client_median is not None else None,
        last_ranked_at=last,
    )


def count_annotators(session: Session) -> int:
    """How many people the annotators page lists."""
    sub = _annotator_stats().subquery()
    return int(session.scalar(select(func.count()).select_from(sub)) or 0)


def annotator_rows(session: Session, limit: int, offset: int) -> list[AnnotatorRow]:
    """Per annotator: rankings, drops, skips, flags raised, median seconds per ranking; busiest first."""
    sub = _annotator_stats().subquery()
    ordered = select(sub).order_by(sub.c.rankings.desc(), sub.c.id).limit(limit).offset(offset)
    return [_annotator_row(r) for r in session.execute(ordered)]


def annotator_row(session: Session, user_id: int) -> AnnotatorRow | None:
    """One annotator's row of the annotators page."""
    row = session.execute(_annotator_stats().where(User.id == user_id)).first()
    return _annotator_row(row) if row is not None else None


def _timed(annotator_id: int) -> list[Any]:
    return [
        Ranking.annotator_id == annotator_id,
        Ranking.dropped.is_(False),
        Ranking.server_seconds.is_not(None),
    ]


def timing_range(session: Session, annotator_id: int) -> tuple[float, float] | None:
    """The fastest and slowest server-measured seconds of an annotator's live rankings (None: none)."""
    lo, hi = session.execute(
        select(func.min(Ranking.server_seconds), func.max(Ranking.server_seconds)).where(
            *_timed(annotator_id)
        )
    ).one()
    return None if lo is None or hi is None else (float(lo), float(hi))


def timing_histogram(session: Session, annotator_id: int, edges: Sequence[float]) -> list[tuple[int, int]]:
    """(bucket, count) of an annotator's live rankings by server-measured seconds; bucket i (1-based) is
    [edges[i-1], edges[i]). Values outside the edges count in the first or the last bucket."""
    lo, hi = float(edges[0]), float(edges[-1])
    clamped = func.least(func.greatest(Ranking.server_seconds, lo), math.nextafter(hi, lo))
    bucket = func.width_bucket(clamped, text("CAST(:edges AS float8[])").bindparams(edges=list(edges)))
    stmt = select(bucket, func.count()).where(*_timed(annotator_id)).group_by(bucket).order_by(bucket)
    return [(int(b), int(n)) for b, n in session.execute(stmt)]
