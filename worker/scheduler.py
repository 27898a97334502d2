"""Periodic housekeeping: start a round once enough new rankings arrived; promote a policy waiting for the
promotion gate once it passes; close rounds whose job vanished."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict
from app.orm import ACTIVE_ROUND_STATUSES, Round
from app.training import repository as training_repo
from app.training import rounds as training_rounds
from app.training.queue import job_status
from worker import rounds

log = logging.getLogger(__name__)

# Queue states in which the job will never (again) run the round.
ENDED_JOB_STATES = ("succeeded", "failed", "cancelled", "aborted")


def maybe_start_auto_round(session: Session, settings: Settings) -> int | None:
    """Queue an automatic training round when the threshold is met and no round is active."""
    threshold = settings.auto_round_min_rankings
    if threshold <= 0:
        return None
    # Held to the commit (re-entrant): the count below and the start are one decision.
    training_rounds.lock_round_start(session)
    fresh = training_repo.rankings_since_last_training_round(session)
    if fresh < threshold:
        return None
    try:
        round_ = training_rounds.start_round(
            session,
            settings,
            {},
            requested_by_id=None,
            trigger="auto",
            note=f"started automatically: {fresh} new rankings (threshold {threshold})",
        )
    except Conflict:
        return None  # a round is queued or running; the next tick looks again
    log.info("auto round %s queued after %d new rankings", round_.id, fresh)
    return round_.id


def promote_ready_policy(session: Session, settings: Settings) -> int | None:
    """Promote a policy marked "promote when ready" once it passes the gate (app.training.rounds)."""
    promoted = training_rounds.promote_ready(session, settings)
    if promoted is not None:
        log.info("policy version %s passed the promotion gate and is now active", promoted)
    return promoted


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
