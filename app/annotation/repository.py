"""Queries of the annotation task flow that are not its hot path: progress counts and single rows.

The hot path itself is in handout_repository.py (the next task: one call of a database function) and
submission_repository.py (a ranking's or a skip's locks and store). The admin pages' reads of the same
tables are in review_repository.py (rankings browser, flagged candidates, candidates of sets) and
activity_repository.py (counts of activity per day and annotator).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    ColumnElement,
    Integer,
    ScalarSelect,
    and_,
    any_,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from app.annotation.tiers import MAX_CANDIDATES, MIN_CANDIDATES
from app.orm import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    Prompt,
    PromptSet,
    Ranking,
    SetStatus,
)
from app.projects.repository import visible_project_ids


def db_now(session: Session) -> dt.datetime:
    """The database's wall clock now (not the transaction start): one clock for every app process."""
    return session.execute(select(func.clock_timestamp())).scalar_one()


# The hand-out's conditions (rankloop_next_task, migration 0014), for the page's count of sets left: a change
# to one of them belongs in both places.


def _live(now: dt.datetime | ColumnElement[dt.datetime]) -> ColumnElement[bool]:
    # A slot is taken by a submitted ranking or by a lease that has not expired yet.
    return or_(
        Assignment.status == AssignmentStatus.submitted,
        and_(Assignment.status == AssignmentStatus.leased, Assignment.lease_expires_at > now),
    )


def _live_count_of_set(now: dt.datetime | ColumnElement[dt.datetime]) -> ScalarSelect[int]:
    return (
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.set_id == ComparisonSet.id, _live(now))
        .correlate(ComparisonSet)
        .scalar_subquery()
    )


def _rankable_size() -> ColumnElement[bool]:
    # The page and API rank 2..9 candidates (one digit key each); other sets are not handed out. One
    # aggregate with HAVING: a BETWEEN on a scalar subquery would run the count twice.
    return exists(
        select(func.count())
        .select_from(ComparisonSetItem)
        .join(Candidate, Candidate.id == ComparisonSetItem.candidate_id)
        .where(ComparisonSetItem.set_id == ComparisonSet.id, Candidate.hidden.is_(False))
        .having(func.count().between(MIN_CANDIDATES, MAX_CANDIDATES))
        .correlate(ComparisonSet)
    )


def _done_by(annotator_id: int | ColumnElement[int]) -> ColumnElement[bool]:
    # Submitted or skipped by this annotator: never offered to them again.
    return exists().where(
        Assignment.set_id == ComparisonSet.id,
        Assignment.annotator_id == annotator_id,
        Assignment.status.in_([AssignmentStatus.submitted, AssignmentStatus.skipped]),
    )


# A literal, not a bound parameter: a prepared (generic) plan can then still use the partial index.
_OPEN = ComparisonSet.status == literal_column(f"'{SetStatus.open.value}'")
# Gold sets (known ranking) are not in the ordinary walk: the hand-out mixes them in at a rate.
_ORDINARY = ComparisonSet.gold_tiers.is_(None)


def _in_projects(
    annotator_id: int | ColumnElement[int], project_id: ColumnElement[int] | None
) -> ColumnElement[bool]:
    # Only the annotator's projects (every project for an admin). The array is computed once per
    # statement, so the count still walks ix_comparison_sets_handout and tests each set against it.
    return ComparisonSet.project_id == any_(visible_project_ids(annotator_id, project_id))


def _eligible(
    annotator_id: int | ColumnElement[int], project_id: ColumnElement[int] | None
) -> list[ColumnElement[bool]]:
    return [
        _OPEN,
        _in_projects(annotator_id, project_id),
        PromptSet.paused.is_(False),
        ~_done_by(annotator_id),
        _rankable_size(),
    ]


# The order of ix_comparison_sets_handout (a partial index on open sets): walking it needs no sort.
_HANDOUT_ORDER = (
    ComparisonSet.prompt_set_priority.desc(),
    ComparisonSet.prompt_priority.desc(),
    ComparisonSet.selection_priority.desc(),
    ComparisonSet.submitted_count.desc(),
    ComparisonSet.created_at,
    ComparisonSet.id,
)


def count_rankings_since(session: Session, annotator_id: int, since: dt.datetime) -> int:
    """Rankings this annotator stored since a moment."""
    return session.execute(
        select(func.count())
        .select_from(Ranking)
        .where(Ranking.annotator_id == annotator_id, Ranking.created_at >= since)
    ).scalar_one()


# The ranking page says "N left" exactly up to this many, then "N+": counting every open set an annotator
# could take grows with the queue (about 50 ms at 5,000 open sets); this stops after the first N + 1.
LEFT_COUNT_CAP = 200


def count_available_sets(
    session: Session, annotator_id: int, now: dt.datetime, project_id: int | None = None
) -> int:
    """Sets this annotator could still rank now (of their projects, or of one): a free slot, or their own
    live lease; counted up to LEFT_COUNT_CAP + 1 (more than the cap reads as the cap + 1).

    The candidates are read in hand-out order from ix_comparison_sets_handout (open sets only) and the
    count stops at the cap, so the work is bounded by the cap, not by the number of open sets."""
    own_lease = exists().where(
        Assignment.set_id == ComparisonSet.id,
        Assignment.annotator_id == annotator_id,
        Assignment.status == AssignmentStatus.leased,
        Assignment.lease_expires_at > now,
    )
    available = (
        select(ComparisonSet.id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .where(
            *_eligible(annotator_id, literal(project_id, Integer)),
            _ORDINARY,
            or_(_live_count_of_set(now) < ComparisonSet.overlap, own_lease),
        )
        .order_by(*_HANDOUT_ORDER)
        .limit(LEFT_COUNT_CAP + 1)
        .subquery()
    )
    return session.execute(select(func.count()).select_from(available)).scalar_one()


def get_candidate(session: Session, candidate_id: int) -> Candidate | None:
    """One candidate by id."""
    return session.get(Candidate, candidate_id)


def get_ranking(session: Session, ranking_id: int) -> Ranking | None:
    """One ranking by id."""
    return session.get(Ranking, ranking_id)
