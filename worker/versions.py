"""Model versions as the worker reads and publishes them (rows only; files are worker/artifacts.py).

A round builds on the newest policy of its base model (or the untrained base model, itself a version so
its candidates have one), compares with the active one, and publishes its reward model and policy in one
transaction; when the round's config says auto_promote, the policy is promoted through the promotion gate in
app/training/rounds.py (at once if it passes, else once people prefer it: the periodic promote_ready).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.orm import ModelKind, ModelStatus, ModelVersion, Round
from app.training import rounds


@dataclass(frozen=True)
class VersionRef:
    id: int
    name: str
    base_model: str
    adapter_path: str | None
    status: str
    kind: str = "policy"


def _ref(v: ModelVersion | None) -> VersionRef | None:
    if v is None:
        return None
    return VersionRef(v.id, v.name, v.base_model, v.adapter_path, v.status.value, v.kind.value)


def get_version(session: Session, version_id: int | None) -> VersionRef | None:
    return _ref(session.get(ModelVersion, version_id)) if version_id is not None else None


def _of_project(project_id: int | None) -> list[Any]:
    # Each project has its own policy and reward model line; None (older callers): every project.
    return [] if project_id is None else [ModelVersion.project_id == project_id]


def active_policy(session: Session, project_id: int | None = None) -> VersionRef | None:
    """The policy the project's annotators' new candidates come from (at most one is active per project)."""
    return _ref(
        session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.kind == ModelKind.policy,
                ModelVersion.status == ModelStatus.active,
                *_of_project(project_id),
            )
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
    )


def newest_policy(session: Session, base_model: str, project_id: int | None = None) -> VersionRef | None:
    """The project's newest trained policy on this base model that nobody retired: the next round builds
    on it."""
    return _ref(
        session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.kind == ModelKind.policy,
                ModelVersion.adapter_path.is_not(None),
                ModelVersion.base_model == base_model,
                ModelVersion.status.in_([ModelStatus.candidate, ModelStatus.active]),
                *_of_project(project_id),
            )
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
    )


def newest_reward(session: Session, base_model: str, project_id: int | None = None) -> VersionRef | None:
    return _ref(
        session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.kind == ModelKind.reward,
                ModelVersion.adapter_path.is_not(None),
                ModelVersion.base_model == base_model,
                ModelVersion.status != ModelStatus.failed,
                *_of_project(project_id),
            )
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
    )


def _base_name(session: Session, base_model: str, project_id: int | None) -> str:
    # The first project on a base model gets the plain name, others a suffixed one, so the base's
    # version name still tells the projects apart (names are unique per project since migration 0011).
    plain = f"base-{base_model}"[:200]
    owner = session.scalar(select(ModelVersion.project_id).where(ModelVersion.name == plain))
    if project_id is None or owner is None or owner == project_id:
        return plain
    return f"base-{base_model}"[:180] + f" (project {project_id})"


def base_policy(session: Session, base_model: str, project_id: int | None = None) -> VersionRef:
    """The untrained base model as a policy version of the project (candidates need a version); active if
    the project has no active policy."""
    name = _base_name(session, base_model, project_id)
    # Names are unique per project (migration 0011): look in this project's line only.
    row = session.scalars(
        select(ModelVersion).where(ModelVersion.name == name, *_of_project(project_id))
    ).first()
    if row is None:
        rounds.lock_promotions(session)
        has_active = session.scalars(
            select(ModelVersion.id).where(
                ModelVersion.kind == ModelKind.policy,
                ModelVersion.status == ModelStatus.active,
                *_of_project(project_id),
            )
        ).first()
        row = ModelVersion(
            project_id=project_id,
            name=name,
            kind=ModelKind.policy,
            base_model=base_model,
            adapter_path=None,
            status=ModelStatus.retired if has_active else ModelStatus.active,
            config={"source": "base model, untrained"},
            metrics={},
        )
        session.add(row)
        session.flush()
    ref = _ref(row)
    assert ref is not None
    return ref


def parent_id(session: Session, version_id: int) -> int | None:
    row = session.get(ModelVersion, version_id)
    return row.parent_id if row is not None else None


def version_names_of_round(session: Session, prefix: str) -> set[str]:
    return set(session.scalars(select(ModelVersion.name).where(ModelVersion.name.startswith(prefix))).all())


@dataclass(frozen=True)
class NewVersion:
    name: str
    kind: ModelKind
    base_model: str
    adapter_path: str
    parent_id: int | None
    config: dict[str, Any]
    metrics: dict[str, Any]


def publish(
    session: Session,
    round_id: int,
    snapshot_id: int,
    reward: NewVersion,
    policy: NewVersion,
    promote: bool,
    settings: Settings,
    project_id: int | None = None,
) -> tuple[int, int, str]:
    """Insert both versions (files already complete), link them to the round, optionally promote; one txn.

    Returns the reward and policy ids and what happened to the policy (for the round's log).
    """
    rows = []
    for v in (reward, policy):
        row = ModelVersion(
            project_id=project_id,
            name=v.name,
            kind=v.kind,
            base_model=v.base_model,
            adapter_path=v.adapter_path,
            parent_id=v.parent_id,
            status=ModelStatus.candidate,
            config=v.config,
            metrics=v.metrics,
            data_snapshot_id=snapshot_id,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    reward_row, policy_row = rows
    outcome = "awaiting promotion"
    if promote:
        _, check = rounds.request_promotion(session, settings, policy_row.id)
        outcome = (
            f"promoted to active ({check.reason})"
            if check.passed
            else f"promoted once it passes the promotion gate ({check.reason})"
        )
    round_ = session.get(Round, round_id, with_for_update=True)
    assert round_ is not None
    round_.reward_version_id, round_.policy_version_id = reward_row.id, policy_row.id
    return reward_row.id, policy_row.id, outcome
