"""Periodic housekeeping: start a round once enough new rankings arrived; promote a policy waiting for the
promotion gate once it passes; close rounds whose job vanished."""

from __future__ import annotations

import datetime as dt
import logging

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict, Invalid, NotFound
from app.orm import ACTIVE_ROUND_STATUSES, Project, Round
from app.projects import service as projects_service
from app.training import repository as training_repo
from app.training import rounds as training_rounds
from app.training.queue import job_status
from worker import rounds

log = logging.getLogger(__name__)

# Queue states in which the job will never (again) run the round.
ENDED_JOB_STATES = ("succeeded", "failed", "cancelled", "aborted")


def maybe_start_auto_round(
    session: Session, settings: Settings, now: dt.datetime | None = None
) -> int | None:
    """Queue an automatic training round in each project whose schedule says so and that has no active
    round; returns the first new round's id (None: none started). A project's schedule: after N new
    rankings of the project (RANKLOOP_AUTO_ROUND_MIN_RANKINGS unless the project sets its own; 0 = not by
    count) and/or at the times of its cron expression (a round is due when a scheduled time passed since
    its last training round, or since the project was created)."""
    # Held to the commit (re-entrant): the counts below and the starts are one decision.
    training_rounds.lock_round_start(session)
    now = now or dt.datetime.now(dt.UTC)
    started: list[int] = []
    for project in projects_service.all_projects(session):
        reason = _due(session, settings, project, now)
        if reason is None:
            continue
        try:
            round_ = training_rounds.start_round(
                session,
                settings,
                {},
                requested_by_id=None,
                trigger="auto",
                note=f"started automatically: {reason}",
                project_id=project.id,
            )
        except Conflict:
            continue  # a round is queued or running there; the next tick looks again
        except (Invalid, NotFound) as exc:
            log.warning("project %s: no auto round: %s", project.name, exc.message)
            continue
        log.info("auto round %s queued in project %s: %s", round_.id, project.name, reason)
        started.append(round_.id)
    return started[0] if started else None


def _due(session: Session, settings: Settings, project: Project, now: dt.datetime) -> str | None:
    """Why the project's schedule wants a round now (None: it does not)."""
    plan = projects_service.resolved(project, settings)
    if plan.min_rankings > 0:
        fresh = training_repo.rankings_since_last_training_round(session, project.id)
        if fresh >= plan.min_rankings:
            return f"{fresh} new rankings (threshold {plan.min_rankings})"
    if plan.cron:
        last = training_repo.last_training_round_at(session, project.id) or project.created_at
        due = croniter(plan.cron, last).get_next(dt.datetime)
        if due <= now and training_repo.rankings_since_last_training_round(session, project.id) > 0:
            return f"scheduled ({plan.cron}, due {due:%Y-%m-%d %H:%M} UTC)"
    return None


def promote_ready_policy(session: Session, settings: Settings) -> int | None:
    """Promote policies marked "promote when ready" once they pass the gate (app.training.rounds), one
    per project; returns the first promoted id (None: none)."""
    promoted = training_rounds.promote_ready(session, settings)
    for version_id in promoted:
        log.info("policy version %s passed the promotion gate and is now active", version_id)
    return promoted[0] if promoted else None


def close_orphaned_rounds() -> list[int]:
    """Fail active rounds whose queue job has ended or disappeared (e.g. deleted by hand)."""
    from app.db import session_factory, session_scope

    orphans: list[tuple[int, str]] = []
    cancelled: list[int] = []
    with session_scope() as session:
        active = session.execute(
            select(Round.id, Round.job_id, Round.cancel_requested).where(
                Round.status.in_(ACTIVE_ROUND_STATUSES)
            )
        ).all()
        for round_id, job_id, cancel_requested in active:
            state = job_status(session, job_id) if job_id is not None else None
            if cancel_requested and (state is None or state in ENDED_JOB_STATES):
                # An admin cancelled a round whose worker had died: the queue ends such a job as failed.
                cancelled.append(round_id)
            elif state is None:
                orphans.append((round_id, "its queue job is gone"))
            elif state in ENDED_JOB_STATES:
                orphans.append((round_id, f"its queue job ended as {state}"))
    for round_id, reason in orphans:
        log.warning("round %s is active but %s; marking it failed", round_id, reason)
        # rounds.fail re-checks under the row lock: a round that just finished keeps its outcome.
        rounds.fail(session_factory(), round_id, f"the round stopped without finishing: {reason}")
    for round_id in cancelled:
        rounds.cancelled(session_factory(), round_id)
    return [round_id for round_id, _ in orphans] + cancelled
