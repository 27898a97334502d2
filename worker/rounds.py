"""A round's life on its `rounds` row, as the worker sees it: claim, hand to generation, finish, fail,
cancel, requeue.

A training round runs as two jobs: the training job (train queue) up to the publication of its versions,
then, handed over in the same transaction, its generation stage (generate queue), which finishes the round.

Every transition runs in its own short transaction with the row locked, so the API (cancel) and the worker
never overwrite each other's decision.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.orm import Project, Round, RoundStatus
from app.training import queue

log = logging.getLogger(__name__)

FINAL = (RoundStatus.succeeded, RoundStatus.failed, RoundStatus.cancelled)
# A training round whose versions are published, waiting for a worker on the generate queue.
GENERATION_QUEUED = "generation_queued"


@dataclass(frozen=True)
class Claim:
    round_id: int
    attempt: int
    config: dict[str, Any]
    kind: str
    # Checkpoints left by an earlier attempt: the snapshot and the published versions are reused.
    data_snapshot_id: int | None
    reward_version_id: int | None
    policy_version_id: int | None
    # The project whose rankings, prompts, settings and policy and reward model lines the round uses.
    project_id: int | None = None
    overlap: int | None = None  # the project's (None: the server's setting)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lock(session: Session, round_id: int) -> Round | None:
    return session.scalars(
        select(Round).where(Round.id == round_id).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()


def _append_log(row: Round, message: str) -> None:
    stamp = now().strftime("%H:%M:%S")
    row.log_tail = [*(row.log_tail or []), f"{stamp} {message}"][-50:]


def claim(
    sessions: sessionmaker[Session], round_id: int, job_id: int | None, settings: Settings
) -> Claim | None:
    """Start (or restart after a crash) a round; None when there is nothing to run."""
    with sessions() as session, session.begin():
        row = _lock(session, round_id)
        if row is None:
            log.warning("round %s does not exist; nothing to run", round_id)
            return None
        if row.status in FINAL:
            log.info("round %s is already %s", round_id, row.status.value)
            return None
        if job_id is not None and row.job_id is not None and row.job_id != job_id:
            # The round was handed to another job (its generation stage): a retry of this one must not run it.
            log.info("round %s belongs to job %s now; job %s has nothing to do", round_id, row.job_id, job_id)
            return None
        if row.cancel_requested:
            _set_final(row, RoundStatus.cancelled, "cancelled before it started")
            return None
        if row.stage != GENERATION_QUEUED:
            # The generation job taking over a handed-over round continues the attempt; anything else is
            # a new attempt, and only a crash (worker killed, machine lost) brings a started round back here.
            max_attempts = int((row.config or {}).get("max_attempts") or 0) or settings.round_max_attempts
            if row.attempts >= max_attempts:
                reason = (
                    f"gave up after {row.attempts} attempt(s): the worker stopped during stage "
                    f"{row.stage!r} (max_attempts={max_attempts})"
                )
                _set_final(row, RoundStatus.failed, reason)
                return None
            if row.attempts > 0:
                _append_log(row, f"attempt {row.attempts} was interrupted in stage {row.stage!r}; retrying")
            row.attempts += 1
        row.status = RoundStatus.running
        row.started_at = row.started_at or now()
        row.heartbeat_at = now()
        row.job_id = job_id if job_id is not None else row.job_id
        row.stage = "starting"
        row.step, row.total, row.eta_seconds = 0, 0, None
        row.error = None
        return Claim(
            round_id=row.id,
            attempt=row.attempts,
            config=dict(row.config or {}),
            kind=row.kind.value,
            data_snapshot_id=row.data_snapshot_id,
            reward_version_id=row.reward_version_id,
            policy_version_id=row.policy_version_id,
            project_id=row.project_id,
            overlap=session.scalar(select(Project.overlap).where(Project.id == row.project_id)),
        )


def hand_to_generation(session: Session, round_id: int, metrics: dict[str, Any], note: str) -> int:
    """In the transaction that publishes the round's versions: record the training's metrics and queue the
    generation stage as its own job on the generate queue (any worker there takes it); returns its id."""
    row = session.get(Round, round_id)
    assert row is not None  # locked by the publication in this transaction
    row.metrics = {**(row.metrics or {}), **metrics}
    row.stage = GENERATION_QUEUED
    row.step, row.total, row.eta_seconds = 0, 0, None
    _append_log(row, note)
    _append_log(row, f"stage {GENERATION_QUEUED} (waiting for a worker on the generate queue)")
    return queue.enqueue_generation_stage(session, row)


def _set_final(row: Round, status: RoundStatus, message: str | None) -> None:
    row.status = status
    row.finished_at = now()
    row.eta_seconds = None
    if status == RoundStatus.succeeded:
        row.stage = "done"
        row.error = None
    else:
        row.error = message
        if message:
            _append_log(row, f"{status.value}: {message}")


def finish(sessions: sessionmaker[Session], round_id: int, metrics: dict[str, Any]) -> None:
    """The round succeeded; merge its metrics."""
    with sessions() as session, session.begin():
        row = _lock(session, round_id)
        if row is None or row.status in FINAL:
            return
        row.metrics = {**(row.metrics or {}), **metrics}
        _set_final(row, RoundStatus.succeeded, None)
        row.step = row.total


def fail(sessions: sessionmaker[Session], round_id: int, message: str) -> None:
    """The round failed for good, with a reason an admin can act on."""
    with sessions() as session, session.begin():
        row = _lock(session, round_id)
        if row is None or row.status in FINAL:
            return
        _set_final(row, RoundStatus.failed, message[:4000])


def cancelled(sessions: sessionmaker[Session], round_id: int) -> None:
    """The running round stopped at an admin's request."""
    with sessions() as session, session.begin():
        row = _lock(session, round_id)
        if row is None or row.status in FINAL:
            return
        _set_final(row, RoundStatus.cancelled, "cancelled by an admin")


def requeue(sessions: sessionmaker[Session], round_id: int) -> None:
    """The worker is shutting down: the round waits for the next worker, this attempt not counted."""
    with sessions() as session, session.begin():
        row = _lock(session, round_id)
        if row is None or row.status in FINAL:
            return
        row.status = RoundStatus.queued
        row.attempts = max(0, row.attempts - 1)
        row.stage = "queued"
        row.eta_seconds = None
        _append_log(row, "worker shut down; the round will run again on the next worker")


def set_device(sessions: sessionmaker[Session], round_id: int, device: str) -> None:
    """Where this attempt runs (cpu, cuda:0, ...)."""
    with sessions() as session, session.begin():
        row = _lock(session, round_id)
        if row is not None:
            row.device = device[:50]


def merge_metrics(sessions: sessionmaker[Session], round_id: int, metrics: dict[str, Any]) -> None:
    """Record stage results on the round as soon as they are known."""
    with sessions() as session, session.begin():
        row = _lock(session, round_id)
        if row is not None:
            row.metrics = {**(row.metrics or {}), **metrics}
