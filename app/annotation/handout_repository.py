"""The hand-out of ranking tasks, in one statement: the database function rankloop_next_task (migration 0014).

One call does what took five to seven statements from here (each about 0.2-0.3 ms of this process's CPU
on top of its round trip), with the same rules:

* one hand-out at a time per annotator (their user row is locked first; no double lease), and the clock
  is read once that lock is granted;
* their current lease comes back as it is: the newest unexpired one on a set still open, of their
  projects (or of the one asked for);
* with the probability of the project's gold rate (`roll` below it), a random open gold set of theirs
  they have not ranked or skipped (gold sets have no overlap);
* otherwise the walk of ix_comparison_sets_handout (prompt set's priority, prompt's, active selection's,
  sets with more rankings first, then the oldest): open sets of their projects, prompt set not paused,
  not submitted or skipped by them, `k_min`..`k_max` visible candidates, a free slot; sets others hold
  locked are skipped, and if that leaves none, the best such set is waited for;
* once a set is locked, its slots are re-counted in a new statement (a plpgsql function takes a fresh
  snapshot per statement under READ COMMITTED), so no set is leased beyond its overlap; a set found full
  is passed over, at most `attempts` times;
* the lease inserts the annotator's row, or renews their expired one in place (keeping the order they
  saw unless the visible candidates changed); a set they submitted or skipped is never theirs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.annotation.rows import CandidateView, attach
from app.db import MAX_INTEGER, first_row
from app.orm import Assignment, AssignmentStatus


@dataclass(frozen=True, slots=True)
class PromptView:
    """A task's prompt as the page and the API show it."""

    id: int
    text: str
    messages: list[Any] | None  # the conversation (app.conversation), or None for a plain prompt


@dataclass(frozen=True, slots=True)
class ProjectView:
    """What a task shows of its project: its guidelines and flag types."""

    id: int
    name: str
    guidelines: str
    flag_types: list[str]


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A leased task: the assignment (attached to the session), its prompt, project and candidates in the
    annotator's display order."""

    assignment: Assignment
    prompt: PromptView
    project: ProjectView
    candidates: list[CandidateView]


_ASSIGNMENT_KEYS = (
    "id",
    "set_id",
    "annotator_id",
    "status",
    "display_order",
    "leased_at",
    "lease_expires_at",
    "completed_at",
)

# Plain SQL text: no expression to compile or cache key to build per call.
_NEXT_TASK = (
    "SELECT * FROM rankloop_next_task(%(annotator_id)s, %(project_id)s, %(roll)s, %(gold_rate)s,"
    " %(lease_minutes)s, %(k_min)s, %(k_max)s, %(attempts)s)"
)
_TASK = "SELECT * FROM rankloop_task(%(assignment_id)s)"


def _task_row(session: Session, row: Any) -> TaskRow | None:
    if row is None:
        return None
    values = dict(zip(_ASSIGNMENT_KEYS, row[:8], strict=True))
    values["status"] = AssignmentStatus(values["status"])
    assignment = attach(session, Assignment, values)
    ids, texts, truncated, hidden = row[15:19]
    return TaskRow(
        assignment,
        PromptView(row[8], row[9], row[10]),
        ProjectView(row[11], row[12], row[13], list(row[14])),
        [CandidateView(*c) for c in zip(ids, texts, truncated, hidden, strict=True)],
    )


def next_task(
    session: Session,
    annotator_id: int,
    project_id: int | None,
    roll: float,
    gold_rate: float,
    lease_minutes: int,
    k_min: int,
    k_max: int,
    attempts: int,
) -> TaskRow | None:
    """The annotator's current lease or a newly leased set (the rules above); None when nothing is left.

    `roll`: uniform in [0, 1), the gold draw; `gold_rate`, `lease_minutes`: the server's, for projects that
    state none; `k_min`..`k_max`: the candidates a task may show; `attempts`: sets found full once locked
    that are passed over before giving up."""
    params = {
        "annotator_id": annotator_id,
        "project_id": project_id,
        "roll": roll,
        "gold_rate": gold_rate,
        "lease_minutes": lease_minutes,
        "k_min": k_min,
        "k_max": k_max,
        "attempts": attempts,
    }
    return _task_row(session, first_row(session, _NEXT_TASK, params, whole_unit=True))


def task(session: Session, assignment_id: int) -> TaskRow | None:
    """Any assignment as a task (its candidates in display order, hidden ones included), without locking."""
    if not 0 < assignment_id <= MAX_INTEGER:
        return None  # no such row; and out of the function's `integer` range
    row = first_row(session, _TASK, {"assignment_id": assignment_id})
    return _task_row(session, row)
