"""Rules for training rounds and model versions: start, cancel, promote. Flushes, never commits.

A round is a `rounds` row plus a queue job, created in the same transaction (worker/queue.py), so a round
never waits for a job that was not queued, nor a job for a round that was rolled back. At most one training
round is queued or running at a time: starting another answers 409.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict, Invalid, NotFound
from app.orm import (
    ModelKind,
    ModelStatus,
    ModelVersion,
    Round,
    RoundKind,
    RoundStatus,
)
from app.training import repository as repo
from worker import queue
from worker.config import ConfigError, RoundConfig

MAX_LIST = 200


def start_round(
    session: Session,
    settings: Settings,
    overrides: dict[str, Any],
    *,
    requested_by_id: int | None,
    trigger: str = "manual",
    kind: RoundKind = RoundKind.train,
) -> Round:
    """Check the config, then queue a round and its job; 409 while another round of the kind is active."""
    try:
        cfg = RoundConfig.resolve(overrides, settings)
    except ConfigError as exc:
        raise Invalid(f"bad round config: {exc}") from exc
    queue.lock_round_start(session)
    active = repo.active_round(session, kind)
    if active is not None:
        raise Conflict(
            f"round {active.id} is still {active.status.value}; wait for it or cancel it first",
            round_id=active.id,
        )
    round_ = Round(
        kind=kind,
        status=RoundStatus.queued,
        trigger=trigger,
        requested_by_id=requested_by_id,
        config=cfg.as_dict(),
        stage="queued",
        loss_curve=[],
        log_tail=[],
        metrics={},
    )
    queue.enqueue_round(session, round_)
    return round_


def get_round(session: Session, round_id: int) -> Round:
    """One round, or 404."""
    row = repo.get_round(session, round_id)
    if row is None:
        raise NotFound(f"no round {round_id}")
    return row


def list_rounds(session: Session, status: RoundStatus | None = None, limit: int = 50) -> Sequence[Round]:
    """Newest rounds first."""
    return repo.list_rounds(session, status, max(1, min(limit, MAX_LIST)))


def cancel_round(session: Session, round_id: int) -> Round:
    """A queued round is cancelled at once; a running one stops at its next progress check."""
    row = repo.lock_round(session, round_id)
    if row is None:
        raise NotFound(f"no round {round_id}")
    if row.status not in (RoundStatus.queued, RoundStatus.running):
        raise Conflict(f"round {round_id} already {row.status.value}; nothing to cancel")
    row.cancel_requested = True
    if row.status == RoundStatus.queued:
        row.status = RoundStatus.cancelled
        row.finished_at = dt.datetime.now(dt.UTC)
        row.error = "cancelled by an admin before it started"
    if row.job_id is not None:
        # todo -> cancelled at once; doing -> abort requested (the worker also sees cancel_requested).
        queue.request_job_abort(session, row.job_id)
    session.flush()
    return row


def list_model_versions(
    session: Session, kind: ModelKind | None = None, status: ModelStatus | None = None, limit: int = 100
) -> Sequence[ModelVersion]:
    """Newest model versions first."""
    return repo.list_model_versions(session, kind, status, max(1, min(limit, MAX_LIST)))


def promote(session: Session, version_id: int) -> ModelVersion:
    """Make a policy version the active one; the previously active policy is retired."""
    repo.lock_promotions(session, queue.PROMOTION_LOCK_KEY)
    version = repo.get_model_version(session, version_id)
    if version is None:
        raise NotFound(f"no model version {version_id}")
    if version.kind != ModelKind.policy:
        raise Conflict(
            f"model version {version_id} is a {version.kind.value} model; only policies are promoted"
        )
    if version.status == ModelStatus.failed:
        raise Conflict(f"model version {version_id} failed; it cannot be promoted")
    for current in repo.lock_active_policies(session):
        if current.id != version.id:
            current.status = ModelStatus.retired
    session.flush()
    version.status = ModelStatus.active
    session.flush()
    return version
