"""Rules for handing out ranking tasks, storing rankings and skips, and moderating them (admins).

Concurrency: every change that can add to a set's live slots (a new or renewed lease, a submission)
holds that set's row lock, and re-counts the slots in a new statement after the lock is granted
(under READ COMMITTED each statement sees what committed before it started; the locking SELECT
itself may have read an older snapshot). So no set ever collects more than `overlap` rankings.
Lock order is always set row, then assignment row. The hand-out does this inside the database
(rankloop_next_task, see handout_repository.py), where each statement of the function takes a fresh snapshot;
so does a good submission (rankloop_submit_ranking, see submission_repository.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.annotation import handout_repository as handout
from app.annotation import repository as repo
from app.annotation import submission_repository as submission
from app.annotation.schemas import (
    MAX_SECONDS_SPENT,
    MAX_SKIP_REASON_CHARS,
    RankingIn,
    candidate_key,
)
from app.annotation.tiers import MAX_CANDIDATES, MIN_CANDIDATES, validate_tiers
from app.config import Settings
from app.db import MAX_INTEGER
from app.errors import Conflict, Invalid, NotFound
from app.orm import (
    AssignmentStatus,
    SetStatus,
    Skip,
    User,
)
from app.projects import service as projects
from app.text import check_text, is_blank

# Sets found full after locking are passed over; this bounds the work for one request.
MAX_PICK_ATTEMPTS = 20


# A task: the assignment, its prompt and project (plain rows), the candidates in display order.
TaskView = handout.TaskRow
ProjectView = handout.ProjectView


@dataclass
class Progress:
    ranked_today: int
    left: int  # at most repo.LEFT_COUNT_CAP + 1; see `capped`

    @property
    def capped(self) -> bool:
        """More sets are left than were counted: the page says "200+"."""
        return self.left > repo.LEFT_COUNT_CAP


@dataclass
class TaskPage:
    task: TaskView | None
    progress: Progress
    notice: str = ""
    project_id: int | None = None  # the project the page is narrowed to (None: all of the user's)


@dataclass
class SubmitResult:
    ranking: submission.StoredRanking
    created: bool  # False: an identical repeat, answered with the stored ranking


@dataclass
class SkipResult:
    skip: Skip
    created: bool


@dataclass
class _Normalised:
    tiers: list[list[int]]
    all_bad: bool
    flags: dict[str, list[str]]
    rationale: str
    seconds_spent: float | None = field(default=None)


def next_task(
    session: Session, settings: Settings, user: User, project_id: int | None = None
) -> TaskView | None:
    """The annotator's current lease, or a newly leased set, of their projects (or of `project_id`, one
    of theirs); None when nothing is left for them there. The rules are handout_repository's."""
    return handout.next_task(
        session,
        user.id,
        project_id,
        roll=random.random(),
        gold_rate=settings.gold_rate,
        lease_minutes=settings.lease_minutes,
        k_min=MIN_CANDIDATES,
        k_max=MAX_CANDIDATES,
        attempts=MAX_PICK_ATTEMPTS,
    )


def get_task(session: Session, user: User, assignment_id: int) -> TaskView:
    """One of the annotator's own assignments as a task; other people's, and those of a project they are
    no longer a member of, do not exist for them."""
    view = handout.task(session, assignment_id)
    if view is None or view.assignment.annotator_id != user.id:
        raise NotFound("no such task")
    if not projects.can_see(session, user, view.project.id):
        raise NotFound("no such task")
    return view


def progress(session: Session, user: User, project_id: int | None = None) -> Progress:
    """Rankings the annotator stored today (UTC) and sets still open to them (in one project, if given;
    counted up to repo.LEFT_COUNT_CAP, then "more")."""
    now = repo.db_now(session)
    midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Progress(
        ranked_today=repo.count_rankings_since(session, user.id, midnight),
        left=repo.count_available_sets(session, user.id, now, project_id),
    )


def task_page(
    session: Session, settings: Settings, user: User, notice: str = "", project_id: int | None = None
) -> TaskPage:
    """Everything the ranking page shows: the current task (leasing one if needed) and progress."""
    task = next_task(session, settings, user, project_id)
    return TaskPage(
        task=task, progress=progress(session, user, project_id), notice=notice, project_id=project_id
    )


def _normalise(data: RankingIn, shown: list[int], settings: Settings, flag_types: list[str]) -> _Normalised:
    tiers = validate_tiers(data.tiers, shown)
    allowed = set(flag_types)
    flags: dict[str, list[str]] = {}
    named: set[int] = set()
    for key, values in data.flags.items():
        cid = candidate_key(key)
        if cid is None or cid not in shown:
            raise Invalid(f"flags: {key[:20]!r} names no candidate of this task")
        if cid in named:
            # "26" and " 26 " are one candidate: keeping either list would silently lose the other.
            raise Invalid(f"flags: candidate {cid} is named by more than one key")
        named.add(cid)
        bad = sorted(set(values) - allowed)
        if bad:
            raise Invalid(f"flags: unknown flags {bad}; allowed: {list(flag_types)}")
        if values:
            flags[str(cid)] = sorted(set(values))
    rationale = check_text(data.rationale.strip(), "rationale", max_chars=settings.max_rationale_chars)
    seconds = data.seconds_spent
    if seconds is not None and (not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS_SPENT):
        raise Invalid(f"seconds_spent must be between 0 and {MAX_SECONDS_SPENT}")
    return _Normalised(tiers, data.all_bad, flags, rationale, seconds)


def fingerprint(
    assignment_id: int, tiers: list[list[int]], all_bad: bool, flags: dict[str, Any], rationale: str
) -> str:
    """sha256 of the canonical submission (timing excluded: a retry reports a different duration)."""
    canonical = json.dumps(
        {
            "assignment_id": assignment_id,
            "tiers": tiers,
            "all_bad": all_bad,
            "flags": {k: flags[k] for k in sorted(flags, key=int)},
            "rationale": rationale,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _prechecked(data: RankingIn, settings: Settings, source: str) -> submission.Submission | None:
    """The submission normalised as _normalise would, with the checks that need no task; None where any
    of them fails (or an id is beyond PostgreSQL's integer, so no candidate's), to leave the answer to the
    full path (which says "not found" before "invalid")."""
    tiers = [sorted(int(c) for c in tier) for tier in data.tiers]
    ids = [c for tier in tiers for c in tier]
    if not tiers or not all(data.tiers) or len(set(ids)) != len(ids):
        return None
    named: list[int] = []
    flag_values: set[str] = set()
    flags: dict[str, list[str]] = {}
    for key, values in data.flags.items():
        cid = candidate_key(key)
        if cid is None or cid in named:
            return None
        named.append(cid)
        flag_values.update(values)
        if values:
            flags[str(cid)] = sorted(set(values))
    if not all(0 < c <= MAX_INTEGER for c in (*ids, *named)):
        return None
    seconds = data.seconds_spent
    if seconds is not None and (not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS_SPENT):
        return None
    try:
        rationale = check_text(data.rationale.strip(), "rationale", max_chars=settings.max_rationale_chars)
    except Invalid:
        return None
    digest = fingerprint(data.assignment_id, tiers, data.all_bad, flags, rationale)
    return submission.Submission(
        data.assignment_id, tiers, ids, data.all_bad, flags, named, sorted(flag_values), rationale, seconds,
        source, digest,
    )  # fmt: skip


def _own_locked(session: Session, user: User, assignment_id: int) -> submission.Locked:
    # Someone else's assignment answers exactly like a missing one: ids reveal nothing.
    locked = submission.lock_submission(session, assignment_id, user.id)
    if locked is None:
        raise NotFound("no such task")
    return locked


def submit_ranking(
    session: Session, settings: Settings, user: User, data: RankingIn, source: str = "web"
) -> SubmitResult:
    """Store a ranking for the annotator's live lease; an identical repeat returns the stored one.

    A good submission (or its repeat) is one call (submission.submit_ranking); everything else, and a
    submission that call turns down, goes the step-by-step way below, which names what is wrong."""
    checked = _prechecked(data, settings, source)
    if checked is not None and 0 < data.assignment_id <= MAX_INTEGER:
        done = submission.submit_ranking(session, checked, user.id)
        if done is not None:
            return SubmitResult(done[0], created=done[1])
    locked = _own_locked(session, user, data.assignment_id)
    cset, assignment, now = locked.cset, locked.assignment, locked.now
    norm = _normalise(data, list(assignment.display_order), settings, locked.flag_types)
    digest = fingerprint(assignment.id, norm.tiers, norm.all_bad, norm.flags, norm.rationale)
    # A ranking and its assignment's "submitted" are written together, so only then is there one to find.
    if assignment.status == AssignmentStatus.submitted:
        existing = submission.ranking_for_assignment(session, assignment.id)
        if existing is not None:
            if existing.fingerprint == digest:
                return SubmitResult(existing, created=False)
            raise Conflict("this task was already ranked with a different answer")
    if assignment.status == AssignmentStatus.skipped:
        raise Conflict("this task was skipped; it cannot be ranked any more")
    if assignment.status != AssignmentStatus.leased:
        raise Conflict("this task is not open for ranking")
    if assignment.lease_expires_at <= now:
        raise Conflict("your time on this task ran out and it went back to the queue; load the next task")
    if cset.status != SetStatus.open:
        raise Conflict("this comparison set was closed; load the next task")
    ranking, _closed = submission.store_ranking(
        session,
        {
            "assignment_id": assignment.id,
            "set_id": cset.id,
            "annotator_id": user.id,
            "tiers": norm.tiers,
            "all_bad": norm.all_bad,
            "flags": norm.flags,
            "rationale": norm.rationale,
            "display_order": list(assignment.display_order),
            "seconds_spent": norm.seconds_spent,
            # The client's figure is its claim; this one the server measured (lease start -> now).
            "server_seconds": max(0.0, (now - assignment.leased_at).total_seconds()),
            "source": source,
            "fingerprint": digest,
        },
        completed_at=now,
    )
    return SubmitResult(ranking, created=True)


def skip_task(session: Session, user: User, assignment_id: int, reason: str) -> SkipResult:
    """Record why the annotator skipped a task; they never get that set again and the slot is freed."""
    reason = reason.strip()
    if is_blank(reason):
        raise Invalid("reason: a reason is required to skip a task")
    check_text(reason, "reason", max_chars=MAX_SKIP_REASON_CHARS)
    locked = _own_locked(session, user, assignment_id)
    cset, assignment, now = locked.cset, locked.assignment, locked.now
    existing = submission.skip_for_assignment(session, assignment.id)
    if existing is not None:
        return SkipResult(existing, created=False)
    if assignment.status != AssignmentStatus.leased:
        raise Conflict("this task was already ranked; it cannot be skipped")
    skip = submission.add_skip(
        session, Skip(assignment_id=assignment.id, set_id=cset.id, annotator_id=user.id, reason=reason), now
    )
    return SkipResult(skip, created=True)


def rank_then_next(
    session: Session, settings: Settings, user: User, data: RankingIn, project_id: int | None = None
) -> TaskPage:
    """Store a ranking from the page, then hand out the next task (of the project the page shows)."""
    submit_ranking(session, settings, user, data, source="web")
    return task_page(session, settings, user, notice="Saved. Thank you!", project_id=project_id)


def skip_then_next(
    session: Session,
    settings: Settings,
    user: User,
    assignment_id: int,
    reason: str,
    project_id: int | None = None,
) -> TaskPage:
    """Skip a task from the page, then hand out the next task (of the project the page shows)."""
    skip_task(session, user, assignment_id, reason)
    return task_page(session, settings, user, notice="Skipped.", project_id=project_id)


# --- moderation by admins ---------------------------------------------------------------------------------


def set_candidate_hidden(session: Session, candidate_id: int, hidden: bool) -> None:
    """Hide a candidate from every future task and export (or show it again); 404 if unknown."""
    candidate = repo.get_candidate(session, candidate_id)
    if candidate is None:
        raise NotFound(f"no candidate {candidate_id}")
    candidate.hidden = hidden
    session.flush()


def set_ranking_dropped(session: Session, ranking_id: int, dropped: bool) -> None:
    """Drop a ranking from statistics, exports and training (or restore it); 404 if unknown."""
    ranking = repo.get_ranking(session, ranking_id)
    if ranking is None:
        raise NotFound(f"no ranking {ranking_id}")
    ranking.dropped = dropped
    session.flush()
