"""Queries on rounds, model versions and rankings for the training feature (every select lives here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.orm import (
    ACTIVE_ROUND_STATUSES,
    ComparisonSet,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    Round,
    RoundKind,
    RoundStatus,
    SetStatus,
)


def get_round(session: Session, round_id: int) -> Round | None:
    """One round by id."""
    return session.get(Round, round_id)


def lock_round(session: Session, round_id: int) -> Round | None:
    """One round, locked until the transaction ends (cancel and the worker must not cross)."""
    return session.scalars(
        select(Round).where(Round.id == round_id).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()


def list_rounds(
    session: Session, status: RoundStatus | None, limit: int, project_id: int | None = None
) -> Sequence[Round]:
    """Newest rounds first, optionally of one status, of one project."""
    stmt = select(Round).order_by(Round.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Round.status == status)
    if project_id is not None:
        stmt = stmt.where(Round.project_id == project_id)
    return session.scalars(stmt).all()


def active_round(session: Session, kind: RoundKind, project_id: int) -> Round | None:
    """The project's queued or running round of this kind, if any."""
    return session.scalars(
        select(Round)
        .where(Round.kind == kind, Round.status.in_(ACTIVE_ROUND_STATUSES), Round.project_id == project_id)
        .order_by(Round.id)
        .limit(1)
    ).first()


def get_model_version(session: Session, version_id: int) -> ModelVersion | None:
    """One model version by id."""
    return session.get(ModelVersion, version_id)


def list_model_versions(
    session: Session,
    kind: ModelKind | None,
    status: ModelStatus | None,
    limit: int,
    project_id: int | None = None,
) -> Sequence[ModelVersion]:
    """Newest model versions first, optionally filtered (of one project)."""
    stmt = select(ModelVersion).order_by(ModelVersion.id.desc()).limit(limit)
    if project_id is not None:
        stmt = stmt.where(ModelVersion.project_id == project_id)
    if kind is not None:
        stmt = stmt.where(ModelVersion.kind == kind)
    if status is not None:
        stmt = stmt.where(ModelVersion.status == status)
    return session.scalars(stmt).all()


def _active_policy_of(project_id: int) -> Any:
    return select(ModelVersion).where(
        ModelVersion.kind == ModelKind.policy,
        ModelVersion.status == ModelStatus.active,
        ModelVersion.project_id == project_id,
    )


def lock_active_policies(session: Session, project_id: int) -> Sequence[ModelVersion]:
    """The project's active policy versions (normally one), locked for a promotion."""
    return session.scalars(_active_policy_of(project_id).with_for_update()).all()


def active_policy(session: Session, project_id: int) -> ModelVersion | None:
    """The project's active policy (at most one: each project has its own policy line)."""
    return session.scalars(_active_policy_of(project_id).order_by(ModelVersion.id.desc()).limit(1)).first()


def active_policies(session: Session) -> dict[int, ModelVersion]:
    """Project id -> its active policy, for every project that has one (the cross-project overview)."""
    rows = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.kind == ModelKind.policy, ModelVersion.status == ModelStatus.active)
        .order_by(ModelVersion.id)
    )
    return {v.project_id: v for v in rows}


def policies_waiting_for_promotion(session: Session) -> Sequence[ModelVersion]:
    """Policies marked "promote when ready" that are not active (nor failed), newest first."""
    return session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.kind == ModelKind.policy,
            ModelVersion.promote_when_ready.is_(True),
            ModelVersion.status.in_([ModelStatus.candidate, ModelStatus.retired]),
        )
        .order_by(ModelVersion.id.desc())
    ).all()


def newest_reward_version(session: Session, project_id: int | None = None) -> ModelVersion | None:
    """The most recently published reward model with files (of one project)."""
    stmt = select(ModelVersion).where(
        ModelVersion.kind == ModelKind.reward, ModelVersion.adapter_path.is_not(None)
    )
    if project_id is not None:
        stmt = stmt.where(ModelVersion.project_id == project_id)
    return session.scalars(stmt.order_by(ModelVersion.id.desc()).limit(1)).first()


def lock_promotions(session: Session, key: int) -> None:
    """Transaction-scoped advisory lock: one promotion at a time, so exactly one policy stays active."""
    session.execute(select(func.pg_advisory_xact_lock(key)))


# --- reads for the admin pages (rounds, model versions, lineage) ----------------------------------------


def current_round(session: Session, project_id: int | None = None) -> Round | None:
    """The oldest queued or running round of any kind (training first; of one project)."""
    stmt = select(Round).where(Round.status.in_(ACTIVE_ROUND_STATUSES))
    if project_id is not None:
        stmt = stmt.where(Round.project_id == project_id)
    return session.scalars(stmt.order_by((Round.kind == RoundKind.train).desc(), Round.id).limit(1)).first()


def count_rounds(session: Session) -> int:
    """How many rounds there are."""
    return int(session.scalar(select(func.count()).select_from(Round)) or 0)


def rounds_page(session: Session, limit: int, offset: int) -> Sequence[Round]:
    """Rounds, newest first, one page of them."""
    return session.scalars(select(Round).order_by(Round.id.desc()).limit(limit).offset(offset)).all()


def rounds_by_policy(session: Session) -> dict[int, Round]:
    """Policy version id -> the round that published it."""
    rows = session.scalars(select(Round).where(Round.policy_version_id.is_not(None)).order_by(Round.id))
    return {r.policy_version_id: r for r in rows if r.policy_version_id is not None}


def last_training_round_at(session: Session, project_id: int) -> Any:
    """When the project's newest training round was started (None: never)."""
    return session.scalar(
        select(func.max(Round.created_at)).where(
            Round.kind == RoundKind.train, Round.project_id == project_id
        )
    )


def rankings_since_last_training_round(session: Session, project_id: int) -> int:
    """Live rankings of the project stored after its newest training round was started: what the
    auto-round threshold counts (the worker's scheduler) and what the admin overview shows beside it."""
    last = last_training_round_at(session, project_id)
    stmt = (
        select(func.count())
        .select_from(Ranking)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .where(Ranking.dropped.is_(False), ComparisonSet.project_id == project_id)
    )
    if last is not None:
        stmt = stmt.where(Ranking.created_at > last)
    return int(session.scalar(stmt) or 0)


def all_model_versions(session: Session, project_id: int | None = None) -> Sequence[ModelVersion]:
    """Every model version (of one project), oldest first (a handful per round: the lineage tree shows
    them all)."""
    stmt = select(ModelVersion).order_by(ModelVersion.id)
    if project_id is not None:
        stmt = stmt.where(ModelVersion.project_id == project_id)
    return session.scalars(stmt).all()


def model_versions_by_id(session: Session, ids: Sequence[int]) -> dict[int, ModelVersion]:
    """These model versions, keyed by id."""
    if not ids:
        return {}
    rows = session.scalars(select(ModelVersion).where(ModelVersion.id.in_(list(ids))))
    return {v.id: v for v in rows}


def newest_unfailed_reward_version(session: Session, project_id: int | None = None) -> ModelVersion | None:
    """The newest reward model that did not fail (of one project; the overview shows it as the one in
    use)."""
    stmt = select(ModelVersion).where(
        ModelVersion.kind == ModelKind.reward, ModelVersion.status != ModelStatus.failed
    )
    if project_id is not None:
        stmt = stmt.where(ModelVersion.project_id == project_id)
    return session.scalars(stmt.order_by(ModelVersion.id.desc()).limit(1)).first()


# --- prompts waiting for candidates (the generation job's work) ---------------------------------------


def prompts_needing_work_stmt(prompt_set_id: int | None = None, project_id: int | None = None) -> Any:
    """(id, text, messages) of prompts of unpaused prompt sets (or of one; of one project) without an open
    comparison set, most wanted first (priorities), fewest rankings first: what a generation job fills, in
    the order it fills them."""
    open_set = select(ComparisonSet.id).where(
        ComparisonSet.prompt_id == Prompt.id, ComparisonSet.status == SetStatus.open
    )
    rankings = (
        select(func.count())
        .select_from(Ranking)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .where(ComparisonSet.prompt_id == Prompt.id)
        .correlate(Prompt)
        .scalar_subquery()
    )
    in_set = [PromptSet.id == prompt_set_id] if prompt_set_id else []
    if project_id is not None:
        in_set.append(PromptSet.project_id == project_id)
    return (
        select(Prompt.id, Prompt.text, Prompt.messages)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .where(PromptSet.paused.is_(False), ~exists(open_set), *in_set)
        .order_by(PromptSet.priority.desc(), Prompt.priority.desc(), rankings, Prompt.id)
    )


def count_prompts_needing_work(
    session: Session, prompt_set_id: int | None = None, project_id: int | None = None
) -> int:
    """How many prompts a generation job (for this prompt set, or all; of one project) would fill."""
    sub = prompts_needing_work_stmt(prompt_set_id, project_id).order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(sub)) or 0)


def get_prompt_set(session: Session, prompt_set_id: int) -> PromptSet | None:
    """One prompt set by id (a generation job's target)."""
    return session.get(PromptSet, prompt_set_id)
