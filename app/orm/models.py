"""ML model versions (policy, reward, or an external source such as human-written replies)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Boolean, FetchedValue, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, created_at_column, str_enum


class ModelKind(enum.StrEnum):
    policy = "policy"
    reward = "reward"
    # Candidates that no model of ours produced: human-written replies, another system's outputs.
    external = "external"


class ModelStatus(enum.StrEnum):
    candidate = "candidate"  # published, awaiting promotion
    active = "active"  # the policy currently serving candidates
    retired = "retired"
    failed = "failed"


class DataSnapshot(Base):
    """Exactly which rankings a training round used, so the round can be reproduced."""

    __tablename__ = "data_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_ids: Mapped[list[Any]] = mapped_column(default=list)
    ranking_count: Mapped[int] = mapped_column(default=0)
    max_ranking_id: Mapped[int | None] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = created_at_column()


class ModelVersion(Base):
    __tablename__ = "model_versions"
    # Unique within a project (migration 0011): two projects may each have one of the name.
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ModelKind] = mapped_column(str_enum(ModelKind, "model_kind"))
    # The project's policy or reward model line.
    # Filled by a database trigger with the default project when not given (migration 0010), so every
    # writer (older clients, the demo, imports, psql) lands somewhere.
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id"), index=True, server_default=FetchedValue()
    )
    base_model: Mapped[str] = mapped_column(String(500), default="", server_default="")
    adapter_path: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), index=True)
    status: Mapped[ModelStatus] = mapped_column(str_enum(ModelStatus, "model_status"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("data_snapshots.id"))
    # A policy waiting for the promotion gate (app.training.rounds.promote_ready): it becomes active once
    # people prefer it to the active policy with confidence. Cleared when it is promoted.
    promote_when_ready: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[dt.datetime] = created_at_column()


class RewardScore(Base):
    """A reward model's score of one candidate, stored when the worker made the candidate's comparison set;
    compared with what people later ranked, it shows whether the reward model still agrees with them."""

    __tablename__ = "reward_scores"

    reward_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    score: Mapped[float] = mapped_column(Float)
