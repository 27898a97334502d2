"""Queries of the annotation task flow on comparison sets, assignments, rankings and skips.

The admin pages' reads of the same tables are in review_repository.py (rankings browser, flagged
candidates, candidates of sets) and activity_repository.py (counts of activity per day and annotator).

The statements on the annotation hot path (next task, submit) are built once, at import, with bound
parameters: building an expression tree and its cache key on every call cost about a third of a
request's CPU. Their values are passed at execution.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    ScalarSelect,
    Select,
    and_,
    any_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, aliased, lazyload

from app.annotation.tiers import MAX_CANDIDATES, MIN_CANDIDATES
from app.orm import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    Project,
    Prompt,
    PromptSet,
    Ranking,
    SetStatus,
    Skip,
    User,
)
from app.projects.repository import visible_project_ids


def db_now(session: Session) -> dt.datetime:
    """The database's wall clock now (not the transaction start): one clock for every app process."""
    return session.execute(select(func.clock_timestamp())).scalar_one()


_ANNOTATOR = bindparam("annotator_id", type_=Integer)
_SET = bindparam("set_id", type_=Integer)
_ASSIGNMENT = bindparam("assignment_id", type_=Integer)
_NOW = bindparam("now", type_=DateTime(timezone=True))
# One project of the annotator's (the page's project switcher), or NULL for all of theirs.
_PROJECT = bindparam("project_id", type_=Integer)

# NO KEY UPDATE: rows that merely reference the user (sessions, rankings) are not blocked. A locking
# subquery is never flattened, so the outer clock is read once the row lock is granted.
_LOCK_ANNOTATOR = select(func.clock_timestamp()).select_from(
    select(User.id).where(User.id == _ANNOTATOR).with_for_update(key_share=True).subquery()
)


def lock_annotator(session: Session, annotator_id: int) -> dt.datetime:
    """Serialise task hand-out per annotator (no double lease); returns the clock once the lock is held."""
    now = session.execute(_LOCK_ANNOTATOR, {"annotator_id": annotator_id}).scalar_one_or_none()
    return now if now is not None else db_now(session)


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


def _in_projects(
    annotator_id: int | ColumnElement[int], project_id: ColumnElement[int] | None
) -> ColumnElement[bool]:
    # Only the annotator's projects (every project for an admin). The array is computed once per
    # statement, so the hand-out still walks ix_comparison_sets_handout and tests each set against it.
    return ComparisonSet.project_id == any_(visible_project_ids(annotator_id, project_id))


def _eligible(
    annotator_id: int | ColumnElement[int], project_id: ColumnElement[int] | None = _PROJECT
) -> list[ColumnElement[bool]]:
    return [
        _OPEN,
        _in_projects(annotator_id, project_id),
        PromptSet.paused.is_(False),
        ~_done_by(annotator_id),
        _rankable_size(),
    ]


def _lock_next_open_set(skip_locked: bool) -> Select[ComparisonSet, Prompt, Project]:
    return (
        select(ComparisonSet, Prompt, Project)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .join(Project, Project.id == ComparisonSet.project_id)
        .where(
            *_eligible(_ANNOTATOR),
            _live_count_of_set(_NOW) < ComparisonSet.overlap,
            ComparisonSet.id.not_in(bindparam("exclude", expanding=True)),
        )
        .order_by(
            ComparisonSet.prompt_set_priority.desc(),
            ComparisonSet.prompt_priority.desc(),
            ComparisonSet.selection_priority.desc(),
            ComparisonSet.submitted_count.desc(),
            ComparisonSet.created_at,
            ComparisonSet.id,
        )
        .limit(1)
        # NO KEY UPDATE still excludes every other hand-out/submission on this set, but lets inserts
        # that only reference it (a ranking's foreign key) proceed.
        .with_for_update(of=ComparisonSet, skip_locked=skip_locked, key_share=True)
        # The set's items are not needed here; their eager "selectin" load would cost a query.
        .options(lazyload(ComparisonSet.items))
        .execution_options(populate_existing=True)
    )


_LOCK_NEXT_OPEN_SET = _lock_next_open_set(skip_locked=True)
_WAIT_FOR_NEXT_OPEN_SET = _lock_next_open_set(skip_locked=False)


def lock_next_open_set(
    session: Session,
    annotator_id: int,
    now: dt.datetime,
    exclude: Sequence[int] = (),
    wait: bool = False,
    project_id: int | None = None,
) -> tuple[ComparisonSet, Prompt, Project] | None:
    """Lock the best open set of the annotator's projects (or of `project_id`, if theirs) they may still
    take, with its prompt and project, skipping sets others hold locked (or, with `wait`, waiting for the
    best one to be released).

    Best: higher prompt-set priority, then prompt priority, then active selection's priority (the most
    uncertain sets first, app/training/selection.py; 0 for all with random selection), then sets with more
    rankings (finish their overlap first), then the oldest. That order is ix_comparison_sets_handout, whose
    keys triggers (and the worker, for the selection priority) keep on the set row, so this walks the
    index from the top and checks the other conditions only for the few sets it passes: it does not grow
    with the number of open sets. The free-slot filter here reads this statement's snapshot only; callers
    must re-count (candidates_and_live_slots) once it is locked.
    """
    params = {"annotator_id": annotator_id, "now": now, "exclude": list(exclude), "project_id": project_id}
    row = session.execute(_WAIT_FOR_NEXT_OPEN_SET if wait else _LOCK_NEXT_OPEN_SET, params).first()
    return (row[0], row[1], row[2]) if row else None


_LOCK_SET_OF_ASSIGNMENT = (
    select(ComparisonSet, Project)
    .join(Project, Project.id == ComparisonSet.project_id)
    .where(
        ComparisonSet.id
        == select(Assignment.set_id)
        .where(Assignment.id == _ASSIGNMENT, Assignment.annotator_id == _ANNOTATOR)
        .scalar_subquery(),
        _in_projects(_ANNOTATOR, None),
    )
    .with_for_update(of=ComparisonSet, key_share=True)
    .options(lazyload(ComparisonSet.items))
    .execution_options(populate_existing=True)
)


def lock_set_of_assignment(
    session: Session, assignment_id: int, annotator_id: int
) -> tuple[ComparisonSet, Project] | None:
    """Lock the set of this annotator's assignment (waiting for other holders), with its project; None if
    it is not theirs, or no longer of one of their projects."""
    params = {"assignment_id": assignment_id, "annotator_id": annotator_id}
    row = session.execute(_LOCK_SET_OF_ASSIGNMENT, params).one_or_none()
    return (row[0], row[1]) if row else None


# A fresh statement once the set is locked: its visible candidates, plus its live slots (submitted or
# leased and unexpired) and the clock they were counted at. statement_timestamp() is fixed for the
# statement, so the count and the returned time agree; the count is an InitPlan, evaluated once.
_CANDIDATES_AND_LIVE_SLOTS = (
    select(
        Candidate,
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.set_id == _SET, _live(func.statement_timestamp()))
        .scalar_subquery(),
        func.statement_timestamp(),
    )
    .join(ComparisonSetItem, ComparisonSetItem.candidate_id == Candidate.id)
    .where(ComparisonSetItem.set_id == _SET, Candidate.hidden.is_(False))
    .order_by(ComparisonSetItem.position, Candidate.id)
)


def candidates_and_live_slots(
    session: Session, set_id: int
) -> tuple[list[Candidate], int, dt.datetime | None]:
    """A set's visible candidates in set order, its live slot count and the clock, in one fresh statement.

    Without visible candidates there is no row to carry the count: ([], 0, None).
    """
    rows = session.execute(_CANDIDATES_AND_LIVE_SLOTS, {"set_id": set_id}).all()
    if not rows:
        return [], 0, None
    return [row[0] for row in rows], int(rows[0][1]), rows[0][2]


_CLOSE_IF_FULL = (
    update(ComparisonSet)
    .where(
        ComparisonSet.id == _SET,
        ComparisonSet.status == SetStatus.open,
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.set_id == _SET, Assignment.status == AssignmentStatus.submitted)
        .scalar_subquery()
        >= ComparisonSet.overlap,
    )
    .values(status=SetStatus.closed)
    # In-session copies of the set see the new status too.
    .execution_options(synchronize_session="fetch")
)


def close_if_full(session: Session, set_id: int) -> bool:
    """Close an open set once it holds `overlap` submitted assignments; True if it closed now."""
    result = session.execute(_CLOSE_IF_FULL, {"set_id": set_id})
    return bool(result.rowcount)  # type: ignore[attr-defined]


def candidates_by_id(session: Session, ids: Sequence[int]) -> dict[int, Candidate]:
    """Candidates with these ids, keyed by id."""
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(select(Candidate).where(Candidate.id.in_(list(ids))))}


def prompt_of_set(session: Session, set_id: int) -> tuple[Prompt, Project] | None:
    """The prompt a comparison set is about, and its project."""
    row = session.execute(
        select(Prompt, Project)
        .join(ComparisonSet, ComparisonSet.prompt_id == Prompt.id)
        .join(Project, Project.id == ComparisonSet.project_id)
        .where(ComparisonSet.id == set_id)
    ).one_or_none()
    return (row[0], row[1]) if row else None


def get_assignment(session: Session, assignment_id: int) -> Assignment | None:
    """The assignment with this id, without locking."""
    return session.get(Assignment, assignment_id)


def _lock_assignment_statement() -> Select[Assignment, dt.datetime]:
    # Built per call, unlike the other hot statements: an ORM alias of a subquery shared between
    # threads was sometimes compiled wrongly when first used by several at once (NoSuchColumnError,
    # about 1 new process in 25 with 16 threads; reproduced outside the app).
    locked = aliased(
        Assignment, select(Assignment).where(Assignment.id == _ASSIGNMENT).with_for_update().subquery()
    )
    return select(locked, func.clock_timestamp()).execution_options(populate_existing=True)


def lock_assignment(session: Session, assignment_id: int) -> tuple[Assignment, dt.datetime] | None:
    """Lock an assignment row; its current state and the database clock read once the lock is held."""
    row = session.execute(_lock_assignment_statement(), {"assignment_id": assignment_id}).one_or_none()
    return (row[0], row[1]) if row else None


def assignment_of(session: Session, set_id: int, annotator_id: int) -> Assignment | None:
    """This annotator's assignment row for a set (at most one: unique constraint)."""
    return session.scalars(
        select(Assignment)
        .where(Assignment.set_id == set_id, Assignment.annotator_id == annotator_id)
        .execution_options(populate_existing=True)
    ).one_or_none()


_ACTIVE_ASSIGNMENT = (
    select(Assignment)
    .join(ComparisonSet, ComparisonSet.id == Assignment.set_id)
    .where(
        Assignment.annotator_id == _ANNOTATOR,
        Assignment.status == AssignmentStatus.leased,
        Assignment.lease_expires_at > _NOW,
        ComparisonSet.status == SetStatus.open,
        _in_projects(_ANNOTATOR, _PROJECT),
    )
    .order_by(Assignment.leased_at.desc(), Assignment.id.desc())
    .limit(1)
)


def active_assignment(
    session: Session, annotator_id: int, now: dt.datetime, project_id: int | None = None
) -> Assignment | None:
    """The annotator's newest unexpired lease on a set that is still open and of one of their projects
    (of `project_id`, if given), or None."""
    params = {"annotator_id": annotator_id, "now": now, "project_id": project_id}
    return session.scalars(_ACTIVE_ASSIGNMENT, params).first()


_INSERT_LEASE = (
    pg_insert(Assignment)
    .on_conflict_do_nothing(index_elements=[Assignment.set_id, Assignment.annotator_id])
    .returning(Assignment)
)


def insert_lease(
    session: Session,
    set_id: int,
    annotator_id: int,
    display_order: list[int],
    leased_at: dt.datetime,
    lease_expires_at: dt.datetime,
) -> Assignment | None:
    """Insert a leased assignment in one statement; None if the annotator already has a row for the set."""
    values = {
        "set_id": set_id,
        "annotator_id": annotator_id,
        "status": AssignmentStatus.leased,
        "display_order": display_order,
        "leased_at": leased_at,
        "lease_expires_at": lease_expires_at,
    }
    return session.scalars(_INSERT_LEASE, [values]).one_or_none()


def ranking_for_assignment(session: Session, assignment_id: int) -> Ranking | None:
    """The ranking stored for an assignment, if any."""
    return session.scalars(select(Ranking).where(Ranking.assignment_id == assignment_id)).one_or_none()


_INSERT_RANKING = insert(Ranking).returning(Ranking)


def insert_ranking(session: Session, values: dict[str, object]) -> Ranking:
    """Insert a ranking and return it with its id and created_at, in one statement."""
    return session.scalars(_INSERT_RANKING, [values]).one()


def skip_for_assignment(session: Session, assignment_id: int) -> Skip | None:
    """The skip recorded for an assignment, if any."""
    return session.scalars(select(Skip).where(Skip.assignment_id == assignment_id)).one_or_none()


def add_skip(session: Session, skip: Skip) -> Skip:
    """Insert a skip and flush."""
    session.add(skip)
    session.flush()
    return skip


def count_rankings_since(session: Session, annotator_id: int, since: dt.datetime) -> int:
    """Rankings this annotator stored since a moment."""
    return session.execute(
        select(func.count())
        .select_from(Ranking)
        .where(Ranking.annotator_id == annotator_id, Ranking.created_at >= since)
    ).scalar_one()


def count_available_sets(
    session: Session, annotator_id: int, now: dt.datetime, project_id: int | None = None
) -> int:
    """Sets this annotator could still rank now (of their projects, or of one): a free slot, or their own
    live lease."""
    own_lease = exists().where(
        Assignment.set_id == ComparisonSet.id,
        Assignment.annotator_id == annotator_id,
        Assignment.status == AssignmentStatus.leased,
        Assignment.lease_expires_at > now,
    )
    return session.execute(
        select(func.count())
        .select_from(ComparisonSet)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .where(
            *_eligible(annotator_id, literal(project_id, Integer)),
            or_(_live_count_of_set(now) < ComparisonSet.overlap, own_lease),
        )
    ).scalar_one()


def get_candidate(session: Session, candidate_id: int) -> Candidate | None:
    """One candidate by id."""
    return session.get(Candidate, candidate_id)


def get_ranking(session: Session, ranking_id: int) -> Ranking | None:
    """One ranking by id."""
    return session.get(Ranking, ranking_id)
