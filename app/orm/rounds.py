"""Worker runs: training rounds and standalone generation, with live progress for the dashboard."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import DateTime, FetchedValue, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, created_at_column, str_enum


class RoundKind(enum.StrEnum):
    train = "train"  # snapshot -> (sft) -> reward -> policy -> evaluate -> publish -> generate
    generate = "generate"  # candidates only, e.g. the demo's first start


class RoundStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_ROUND_STATUSES = (RoundStatus.queued, RoundStatus.running)


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (Index("ix_rounds_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[RoundKind] = mapped_column(str_enum(RoundKind, "round_kind"), default=RoundKind.train)
    # The project whose data, settings and policy line the round uses.
    # Filled by a database trigger with the default project when not given (migration 0010), so every
    # writer (older clients, the demo, imports, psql) lands somewhere.
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id"), index=True, server_default=FetchedValue()
    )
    status: Mapped[RoundStatus] = mapped_column(
        str_enum(RoundStatus, "round_status"), default=RoundStatus.queued
    )
    trigger: Mapped[str] = mapped_column(String(20), default="manual")  # manual, auto, demo
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The full resolved config (defaults + overrides), so the round can be re-run exactly.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stage: Mapped[str] = mapped_column(String(30), default="queued")
    step: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float | None] = mapped_column()
    eta_seconds: Mapped[float | None] = mapped_column()
    # [[stage, step, loss], ...]: the dashboard draws it as the loss curve.
    loss_curve: Mapped[list[Any]] = mapped_column(default=list)
    log_tail: Mapped[list[Any]] = mapped_column(default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(50))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[int | None] = mapped_column(Integer)
    data_snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("data_snapshots.id"))
    reward_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    policy_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = created_at_column()
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
