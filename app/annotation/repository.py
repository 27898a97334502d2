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
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Integer,
    ScalarSelect,
    Select,
    Table,
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
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.annotation.rows import CandidateView, LockedSet, attach, columns_of, labelled, unlabelled
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
    now = session.connection().execute(_LOCK_ANNOTATOR, {"annotator_id": annotator_id}).scalar_one_or_none()
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
# Gold sets (known ranking) are not in the ordinary walk: they are mixed in by lock_gold_set, at a rate.
_ORDINARY = ComparisonSet.gold_tiers.is_(None)


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


# The order of ix_comparison_sets_handout (a partial index on open sets): walking it needs no sort.
_HANDOUT_ORDER = (
    ComparisonSet.prompt_set_priority.desc(),
    ComparisonSet.prompt_priority.desc(),
    ComparisonSet.selection_priority.desc(),
    ComparisonSet.submitted_count.desc(),
    ComparisonSet.created_at,
    ComparisonSet.id,
)


def _set_with_prompt_and_project() -> Select[tuple[object, ...]]:
    """A set's lockable columns with its prompt's and project's, as plain labelled columns (see _locked)."""
    return (
        select(
            ComparisonSet.id,
            ComparisonSet.overlap,
            ComparisonSet.status,
            *labelled(Prompt, "prompt_"),
            *labelled(Project, "project_"),
        )
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .join(Project, Project.id == ComparisonSet.project_id)
    )


def _locked(session: Session, row: Any) -> tuple[LockedSet, Prompt, Project] | None:
    """A row of _set_with_prompt_and_project: the set, and its prompt and project attached to the session."""
    if row is None:
        return None
    values = row._mapping
    return (
        LockedSet(values["id"], values["overlap"], values["status"]),
        attach(session, Prompt, unlabelled(values, Prompt, "prompt_")),
        attach(session, Project, unlabelled(values, Project, "project_")),
    )


def _lock_next_open_set(skip_locked: bool) -> Select[tuple[object, ...]]:
    return (
        _set_with_prompt_and_project()
        .where(
            *_eligible(_ANNOTATOR),
            _ORDINARY,
            _live_count_of_set(_NOW) < ComparisonSet.overlap,
            ComparisonSet.id != func.all(bindparam("exclude", type_=ARRAY(Integer))),
        )
        .order_by(*_HANDOUT_ORDER)
        .limit(1)
        # NO KEY UPDATE still excludes every other hand-out/submission on this set, but lets inserts
        # that only reference it (a ranking's foreign key) proceed.
        .with_for_update(of=ComparisonSet, skip_locked=skip_locked, key_share=True)
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
) -> tuple[LockedSet, Prompt, Project] | None:
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
    # Plain rows through the connection (no ORM result machinery), attached to the session as objects.
    statement = _WAIT_FOR_NEXT_OPEN_SET if wait else _LOCK_NEXT_OPEN_SET
    return _locked(session, session.connection().execute(statement, params).first())


# The gold pick: a random open gold set of the annotator's projects they have not ranked or skipped, if the
# roll (uniform in [0, 1), drawn by the caller) falls under that set's project's gold rate. Gold sets have
# no overlap: every annotator may rank each one once.
_ROLL = bindparam("roll", type_=Float)
_DEFAULT_GOLD_RATE = bindparam("default_rate", type_=Float)
_LOCK_GOLD_SET = (
    _set_with_prompt_and_project()
    .where(
        ComparisonSet.gold_tiers.is_not(None),
        *_eligible(_ANNOTATOR),
        func.coalesce(Project.gold_rate, _DEFAULT_GOLD_RATE) > _ROLL,
    )
    .order_by(func.random())
    .limit(1)
    .with_for_update(of=ComparisonSet, skip_locked=True, key_share=True)
)


def lock_gold_set(
    session: Session, annotator_id: int, roll: float, default_rate: float, project_id: int | None = None
) -> tuple[LockedSet, Prompt, Project] | None:
    """Lock a random gold set the annotator may still rank, of their projects (or of `project_id`) whose
    gold rate (NULL: `default_rate`) is above `roll`; None if there is none."""
    params = {
        "annotator_id": annotator_id,
        "roll": roll,
        "default_rate": default_rate,
        "project_id": project_id,
    }
    return _locked(session, session.connection().execute(_LOCK_GOLD_SET, params).first())


_LOCK_SET_OF_ASSIGNMENT = (
    select(ComparisonSet.id, ComparisonSet.overlap, ComparisonSet.status, Project.flag_types)
    .join(Project, Project.id == ComparisonSet.project_id)
    .where(
        ComparisonSet.id
        == select(Assignment.set_id)
        .where(Assignment.id == _ASSIGNMENT, Assignment.annotator_id == _ANNOTATOR)
        .scalar_subquery(),
        _in_projects(_ANNOTATOR, None),
    )
    .with_for_update(of=ComparisonSet, key_share=True)
)


def lock_set_of_assignment(
    session: Session, assignment_id: int, annotator_id: int
) -> tuple[LockedSet, list[str]] | None:
    """Lock the set of this annotator's assignment (waiting for other holders), with its project's flag
    types; None if it is not theirs, or no longer of one of their projects."""
    params = {"assignment_id": assignment_id, "annotator_id": annotator_id}
    row = session.connection().execute(_LOCK_SET_OF_ASSIGNMENT, params).one_or_none()
    if row is None:
        return None
    return LockedSet(row[0], row[1], row[2]), list(row[3])


_CANDIDATES_AND_LIVE_SLOTS = (
    select(
        Candidate.id,
        Candidate.text,
        Candidate.truncated,
        Candidate.hidden,
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
) -> tuple[list[CandidateView], int, dt.datetime | None]:
    """A set's visible candidates in set order, its live slot count and the clock, in one fresh statement.

    Without visible candidates there is no row to carry the count: ([], 0, None).
    """
    rows = session.connection().execute(_CANDIDATES_AND_LIVE_SLOTS, {"set_id": set_id}).all()
    if not rows:
        return [], 0, None
    return [CandidateView(*row[:4]) for row in rows], int(rows[0][4]), rows[0][5]


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


_ASSIGNMENTS = cast(Table, Assignment.__table__)
# A locking subquery over the plain table (an ORM alias of it, shared between threads, was sometimes
# compiled wrongly when first used by several at once); the outer clock is read once the lock is held.
_LOCKED_ASSIGNMENT = (
    select(_ASSIGNMENTS).where(_ASSIGNMENTS.c.id == _ASSIGNMENT).with_for_update().subquery("locked")
)
_LOCK_ASSIGNMENT = select(_LOCKED_ASSIGNMENT, func.clock_timestamp().label("clock_now"))


def lock_assignment(session: Session, assignment_id: int) -> tuple[Assignment, dt.datetime] | None:
    """Lock an assignment row; its current state and the database clock read once the lock is held."""
    row = session.connection().execute(_LOCK_ASSIGNMENT, {"assignment_id": assignment_id}).one_or_none()
    if row is None:
        return None
    values = dict(row._mapping)
    now = values.pop("clock_now")
    return attach(session, Assignment, values), now


def assignment_of(session: Session, set_id: int, annotator_id: int) -> Assignment | None:
    """This annotator's assignment row for a set (at most one: unique constraint)."""
    return session.scalars(
        select(Assignment)
        .where(Assignment.set_id == set_id, Assignment.annotator_id == annotator_id)
        .execution_options(populate_existing=True)
    ).one_or_none()


_ACTIVE_ASSIGNMENT = (
    select(*columns_of(Assignment))
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
    row = session.connection().execute(_ACTIVE_ASSIGNMENT, params).first()
    return attach(session, Assignment, row._mapping) if row is not None else None


_INSERT_LEASE = (
    pg_insert(_ASSIGNMENTS)
    .on_conflict_do_nothing(index_elements=[_ASSIGNMENTS.c.set_id, _ASSIGNMENTS.c.annotator_id])
    .returning(*_ASSIGNMENTS.c)
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
    row = session.connection().execute(_INSERT_LEASE, values).one_or_none()
    return attach(session, Assignment, row._mapping) if row is not None else None


_RANKINGS = cast(Table, Ranking.__table__)
_RANKING_FOR_ASSIGNMENT = select(_RANKINGS).where(_RANKINGS.c.assignment_id == _ASSIGNMENT)


def ranking_for_assignment(session: Session, assignment_id: int) -> Ranking | None:
    """The ranking stored for an assignment, if any."""
    params = {"assignment_id": assignment_id}
    row = session.connection().execute(_RANKING_FOR_ASSIGNMENT, params).one_or_none()
    return attach(session, Ranking, row._mapping) if row is not None else None


RANKING_FIELDS = (
    "assignment_id",
    "set_id",
    "annotator_id",
    "tiers",
    "all_bad",
    "flags",
    "rationale",
    "display_order",
    "seconds_spent",
    "server_seconds",
    "source",
    "fingerprint",
)


def _store_ranking_statement() -> Select[tuple[object, ...]]:
    # The ranking, its assignment's "submitted" and the set's closing once full, in one statement. The
    # caller holds the set's row lock, taken in an earlier statement, so this statement's snapshot has
    # every committed submission of the set: it counts the others and adds this one (which the statement
    # itself cannot see yet). The submitted_count trigger fires after the statement, on the closed row.
    sets = cast(Table, ComparisonSet.__table__)
    ranking = (
        insert(_RANKINGS)
        # Parameters are named "r_" + column: a parameter named like a column of a table the statement
        # writes would be taken as a value for that column too.
        .values(
            {
                **{name: bindparam("r_" + name, type_=_RANKINGS.c[name].type) for name in RANKING_FIELDS},
                "dropped": False,
            }
        )
        .returning(*_RANKINGS.c)
        .cte("ranking")
    )
    submitted = (
        update(_ASSIGNMENTS)
        .where(_ASSIGNMENTS.c.id == bindparam("r_assignment_id"))
        .values(status=AssignmentStatus.submitted, completed_at=bindparam("r_completed_at"))
        .returning(_ASSIGNMENTS.c.id)
        .cte("submitted")
    )
    others = (
        select(func.count())
        .select_from(_ASSIGNMENTS)
        .where(
            _ASSIGNMENTS.c.set_id == bindparam("r_set_id"),
            _ASSIGNMENTS.c.status == AssignmentStatus.submitted,
            _ASSIGNMENTS.c.id != bindparam("r_assignment_id"),
        )
        .scalar_subquery()
    )
    closed = (
        update(sets)
        .where(
            sets.c.id == bindparam("r_set_id"),
            sets.c.status == SetStatus.open,
            sets.c.gold_tiers.is_(None),  # a gold set stays open for every annotator
            others + 1 >= sets.c.overlap,
        )
        .values(status=SetStatus.closed)
        .returning(sets.c.id)
        .cte("closed")
    )
    return select(
        ranking, select(func.count()).select_from(closed).scalar_subquery().label("set_closed")
    ).add_cte(submitted)


_STORE_RANKING = _store_ranking_statement()


def store_ranking(
    session: Session, values: dict[str, object], completed_at: dt.datetime
) -> tuple[Ranking, bool]:
    """Insert a ranking, mark its assignment submitted and close its set if that filled it, in one
    statement (the caller holds the set's lock); the ranking, and whether the set closed now.

    Copies of the assignment and the set already in the session get the new status too."""
    params = {"r_" + name: value for name, value in values.items()}
    params["r_completed_at"] = completed_at
    row = session.connection().execute(_STORE_RANKING, params).one()
    stored = dict(row._mapping)
    closed = bool(stored.pop("set_closed"))
    attach(
        session,
        Assignment,
        {"id": values["assignment_id"], "status": AssignmentStatus.submitted, "completed_at": completed_at},
        only_if_present=True,
    )
    if closed:
        attach(
            session, ComparisonSet, {"id": values["set_id"], "status": SetStatus.closed}, only_if_present=True
        )
    return attach(session, Ranking, stored), closed


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
