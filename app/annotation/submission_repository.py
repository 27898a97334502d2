"""Storing a ranking or a skip for a leased task: the locks, the one-statement store, the repeats.

A good submission is one statement: rankloop_submit_ranking (migration 0015) takes the locks, checks the
submission against the locked task, and stores it or answers the identical stored one. Anything else
(someone else's task, a failed check, a conflict) takes the statement-by-statement path, whose checks name
what is wrong: the locks (rankloop_lock_submission, migration 0014: the set row, then the assignment row,
and the clock once both are held), and the store (the ranking, the assignment's "submitted" and the set's
closing once full, in one statement). That statement is built once, at import, with bound parameters:
building an expression tree and its cache key per call cost about a third of a request's CPU.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, insert, inspect, select, update
from sqlalchemy.orm import Session

from app.annotation.rows import LockedSet, attach
from app.db import MAX_INTEGER, first_row
from app.orm import Assignment, AssignmentStatus, ComparisonSet, Ranking, SetStatus, Skip


@dataclass(frozen=True, slots=True)
class LockedAssignment:
    """An assignment row as locked (a plain row: attaching an ORM object cost more than the statement)."""

    id: int
    set_id: int
    annotator_id: int
    status: AssignmentStatus
    display_order: list[int]
    leased_at: dt.datetime
    lease_expires_at: dt.datetime
    completed_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Locked:
    """A submission's locked rows: its set, the project's flag types, the assignment and the database
    clock read once both locks were granted."""

    cset: LockedSet
    flag_types: list[str]
    assignment: LockedAssignment
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class StoredRanking:
    """A ranking row as stored (the columns of app.orm.Ranking)."""

    id: int
    assignment_id: int
    set_id: int
    annotator_id: int
    tiers: list[Any]
    all_bad: bool
    flags: dict[str, Any]
    rationale: str
    display_order: list[int]
    seconds_spent: float | None
    server_seconds: float | None
    source: str
    fingerprint: str
    dropped: bool
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Submission:
    """A ranking as the client sent it, normalised without its task (the caller's checks): tiers sorted
    inside each tie, flags as stored; `ids` every ranked candidate, `named` every candidate a flags key
    names (with or without flags), `flag_values` every flag used."""

    assignment_id: int
    tiers: list[list[int]]
    ids: list[int]
    all_bad: bool
    flags: dict[str, list[str]]
    named: list[int]
    flag_values: list[str]
    rationale: str
    seconds_spent: float | None
    source: str
    fingerprint: str


_SUBMIT = (
    "SELECT * FROM rankloop_submit_ranking(%(assignment_id)s::integer, %(annotator_id)s::integer,"
    " %(tiers)s::jsonb, %(ids)s::integer[], %(all_bad)s::boolean, %(flags)s::jsonb, %(named)s::integer[],"
    " %(flag_values)s::text[], %(rationale)s::text, %(seconds)s::double precision, %(source)s::varchar,"
    " %(fingerprint)s::varchar)"
)


def submit_ranking(session: Session, sub: Submission, annotator_id: int) -> tuple[StoredRanking, bool] | None:
    """A good submission in one statement (rankloop_submit_ranking): the ranking stored now and True, or
    the identical one stored before and False. None, with nothing written, for anything else (not theirs,
    a failed check, a conflict): the caller's full path then says what.

    Every id must be within PostgreSQL's integer (the caller's check). Copies of the assignment and the set
    already in the session get their new status too."""
    params = {
        "assignment_id": sub.assignment_id,
        "annotator_id": annotator_id,
        "tiers": json.dumps(sub.tiers),
        "ids": sub.ids,
        "all_bad": sub.all_bad,
        "flags": json.dumps(sub.flags),
        "named": sub.named,
        "flag_values": sub.flag_values,
        "rationale": sub.rationale,
        "seconds": sub.seconds_spent,
        "source": sub.source,
        "fingerprint": sub.fingerprint,
    }
    row = first_row(session, _SUBMIT, params, whole_unit=True)
    if row is None:
        return None
    created, closed = row[0], row[1]
    stored = StoredRanking(*row[2:])
    if created:
        # Session copies reload what the function changed when next read (no query unless one is).
        _expire(session, Assignment, stored.assignment_id, ["status", "completed_at"])
        if closed:
            _expire(session, ComparisonSet, stored.set_id, ["status"])
    return stored, created


def _expire(session: Session, cls: type, row_id: int, keys: list[str]) -> None:
    copy = session.identity_map.get(inspect(cls).identity_key_from_primary_key((row_id,)))
    if copy is not None:
        session.expire(copy, keys)


_LOCK = "SELECT * FROM rankloop_lock_submission(%(assignment_id)s, %(annotator_id)s)"


def lock_submission(session: Session, assignment_id: int, annotator_id: int) -> Locked | None:
    """Lock the set of this annotator's assignment, then the assignment (waiting for other holders); None if
    it is not theirs, or its set is no longer of one of their projects."""
    if not (0 < assignment_id <= MAX_INTEGER and 0 < annotator_id <= MAX_INTEGER):
        return None  # no such row; and out of the function's `integer` range
    params = {"assignment_id": assignment_id, "annotator_id": annotator_id}
    row = first_row(session, _LOCK, params)
    if row is None:
        return None
    assignment = LockedAssignment(
        row[4], row[0], row[5], AssignmentStatus(row[6]), row[7], row[8], row[9], row[10]
    )
    return Locked(LockedSet(row[0], row[1], SetStatus(row[2])), list(row[3]), assignment, row[11])


_ASSIGNMENTS = cast(Table, Assignment.__table__)
_RANKINGS = cast(Table, Ranking.__table__)
_RANKING_FOR_ASSIGNMENT = select(_RANKINGS).where(
    _RANKINGS.c.assignment_id == bindparam("assignment_id", type_=_RANKINGS.c.assignment_id.type)
)


def _stored(values: Mapping[Any, Any]) -> StoredRanking:
    return StoredRanking(**{key: values[key] for key in _RANKING_KEYS})


_RANKING_KEYS = tuple(StoredRanking.__dataclass_fields__)


def ranking_for_assignment(session: Session, assignment_id: int) -> StoredRanking | None:
    """The ranking stored for an assignment, if any."""
    params = {"assignment_id": assignment_id}
    row = session.connection().execute(_RANKING_FOR_ASSIGNMENT, params).one_or_none()
    return _stored(row._mapping) if row is not None else None


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
) -> tuple[StoredRanking, bool]:
    """Insert a ranking, mark its assignment submitted and close its set if that filled it, in one
    statement (the caller holds the set's lock); the ranking, and whether the set closed now.

    Copies of the assignment and the set already in the session get the new status too."""
    params = {"r_" + name: value for name, value in values.items()}
    params["r_completed_at"] = completed_at
    row = session.connection().execute(_STORE_RANKING, params).one()
    stored = row._mapping
    closed = bool(stored["set_closed"])
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
    return _stored(stored), closed


def skip_for_assignment(session: Session, assignment_id: int) -> Skip | None:
    """The skip recorded for an assignment, if any."""
    return session.scalars(select(Skip).where(Skip.assignment_id == assignment_id)).one_or_none()


def add_skip(session: Session, skip: Skip, completed_at: dt.datetime) -> Skip:
    """Insert a skip, mark its assignment skipped and flush; a copy of the assignment already in the
    session gets the new status too."""
    session.add(skip)
    session.flush()
    session.execute(
        update(_ASSIGNMENTS)
        .where(_ASSIGNMENTS.c.id == skip.assignment_id)
        .values(status=AssignmentStatus.skipped, completed_at=completed_at)
    )
    attach(
        session,
        Assignment,
        {"id": skip.assignment_id, "status": AssignmentStatus.skipped, "completed_at": completed_at},
        only_if_present=True,
    )
    return skip
