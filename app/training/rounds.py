"""The round and version rules, once, for every caller: the API and admin pages, the CLI and the worker.

- `start_round`: check the config, then queue a round and its job in the caller's transaction; at most one
  round of a kind is queued or running (Conflict otherwise). The periodic auto-round calls it with
  trigger="auto".
- `promote_policy`: make a policy version the active one and retire the previous one; admins promote by
  hand, the worker when a round's config says auto_promote.

Both take a transaction-scoped advisory lock, so the decision holds across processes. Flushes, never
commits: the caller's transaction decides.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict, Invalid, NotFound
from app.orm import ModelKind, ModelStatus, ModelVersion, Round, RoundKind, RoundStatus
from app.training import queue
from app.training import repository as repo
from app.training.config import ConfigError, RoundConfig

# An external model version whose candidates a person wrote (its name holds this mark, or its config sets
# this key true); its first-ranked replies feed SFT.
HUMAN_MARK = "human"
# `config["source"]` of the external version holding imported demonstrations (and of their candidates).
DEMONSTRATION_SOURCE = "demonstration"


def start_round(
    session: Session,
    settings: Settings,
    overrides: dict[str, Any],
    *,
    requested_by_id: int | None,
    trigger: str = "manual",
    kind: RoundKind = RoundKind.train,
    note: str | None = None,
) -> Round:
    """Queue a round of `kind` with its job; returns the flushed row (job_id set).

    `overrides` are round config keys (RoundConfig); `note` is the first line of the round's log.
    Raises Invalid for a bad config and Conflict (with round_id) while another round of the kind is active.
    """
    try:
        cfg = RoundConfig.resolve(overrides, settings)
    except ConfigError as exc:
        raise Invalid(f"bad round config: {exc}") from exc
    lock_round_start(session)
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
        log_tail=[note] if note else [],
        metrics={},
    )
    queue.enqueue_round(session, round_)
    return round_


def lock_round_start(session: Session) -> None:
    """Serialise "is a round active? no: start one" until the transaction ends (re-entrant)."""
    session.execute(select(func.pg_advisory_xact_lock(queue.ROUND_START_LOCK_KEY)))


def lock_promotions(session: Session) -> None:
    """One promotion (or first active policy) at a time, so exactly one policy stays active."""
    repo.lock_promotions(session, queue.PROMOTION_LOCK_KEY)


def promote_policy(session: Session, version_id: int) -> ModelVersion:
    """Make a policy version the active one; the previously active policy is retired.

    Raises NotFound for an unknown id, Conflict for a reward/external model or a failed version.
    """
    lock_promotions(session)
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
