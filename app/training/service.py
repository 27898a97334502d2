"""The web side of training rounds and model versions: follow, list, cancel; demonstrations. Flushes only.

Starting a round and promoting a policy are rules the worker applies too: they live once in
app/training/rounds.py. A round is a
`rounds` row plus a queue job, created in the same transaction (app/training/queue.py), so a round never
waits for a job that was not queued, nor a job for a round that was rolled back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.orm import (
    ModelKind,
    ModelStatus,
    ModelVersion,
    Round,
    RoundStatus,
)
from app.training import queue
from app.training import repository as repo

MAX_LIST = 200


def get_round(session: Session, round_id: int) -> Round:
    """One round, or 404."""
    row = repo.get_round(session, round_id)
    if row is None:
        raise NotFound(f"no round {round_id}")
    return row


def list_rounds(
    session: Session, status: RoundStatus | None = None, limit: int = 50, project_id: int | None = None
) -> Sequence[Round]:
    """Newest rounds first (of one project, if given)."""
    return repo.list_rounds(session, status, max(1, min(limit, MAX_LIST)), project_id)


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
    session: Session,
    kind: ModelKind | None = None,
    status: ModelStatus | None = None,
    limit: int = 100,
    project_id: int | None = None,
) -> Sequence[ModelVersion]:
    """Newest model versions first (of one project, if given)."""
    return repo.list_model_versions(session, kind, status, max(1, min(limit, MAX_LIST)), project_id)


def active_policy(session: Session, project_id: int) -> ModelVersion | None:
    """The project's active policy, if any."""
    return repo.active_policy(session, project_id)


def active_policies(session: Session) -> dict[int, ModelVersion]:
    """Project id -> its active policy."""
    return repo.active_policies(session)
