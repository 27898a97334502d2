"""Projects: separate annotation efforts, each with its own prompt sets, guidelines, settings, members, and
its own reward model and policy line (one LoRA adapter per project on a shared base model)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, created_at_column

DEFAULT_FLAG_TYPES = ("unsafe", "incorrect")


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("k_min IS NULL OR k_min >= 2", name="k_min_at_least_2"),
        CheckConstraint("k_max IS NULL OR k_max <= 9", name="k_max_at_most_9"),
        CheckConstraint("k_min IS NULL OR k_max IS NULL OR k_min <= k_max", name="k_range_ordered"),
        CheckConstraint("overlap IS NULL OR overlap >= 1", name="overlap_positive"),
        CheckConstraint("lease_minutes IS NULL OR lease_minutes >= 1", name="lease_positive"),
        CheckConstraint(
            "gold_rate IS NULL OR (gold_rate >= 0 AND gold_rate <= 1)", name="gold_rate_fraction"
        ),
        # The project that rows without one (older clients, the demo, imports without a project) join:
        # at most one, found by the SQL function rankloop_default_project() (migration 0010).
        Index("uq_projects_default", "is_default", unique=True, postgresql_where=text("is_default")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Markdown, rendered by app.markdown in the ranking page's guidelines panel.
    guidelines: Mapped[str] = mapped_column(Text, default="", server_default="")
    flag_types: Mapped[list[str]] = mapped_column(
        ARRAY(String(40)), default=lambda: list(DEFAULT_FLAG_TYPES), server_default="{unsafe,incorrect}"
    )
    # NULL: the server-wide setting (RANKLOOP_OVERLAP, RANKLOOP_LEASE_MINUTES, RANKLOOP_BASE_MODEL, the
    # round config's k range), so a project states only what it changes.
    k_min: Mapped[int | None] = mapped_column(Integer)
    k_max: Mapped[int | None] = mapped_column(Integer)
    overlap: Mapped[int | None] = mapped_column(Integer)
    lease_minutes: Mapped[int | None] = mapped_column(Integer)
    base_model: Mapped[str | None] = mapped_column(String(500))
    # Share of hand-outs that are gold sets (when the annotator has one left); NULL: RANKLOOP_GOLD_RATE.
    gold_rate: Mapped[float | None] = mapped_column(Float)
    # Round config keys (app.training.config.RoundConfig) every round of this project starts from.
    round_defaults: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # The auto-round: after this many new rankings of the project (NULL: RANKLOOP_AUTO_ROUND_MIN_RANKINGS;
    # 0: never by count) and/or at the times of this cron expression (e.g. "0 3 * * 1", weekly).
    schedule_min_rankings: Mapped[int | None] = mapped_column(Integer)
    schedule_cron: Mapped[str | None] = mapped_column(String(100))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[dt.datetime] = created_at_column()


class ProjectMember(Base):
    """An annotator of a project: they are handed, and see, only their projects' tasks (admins see all)."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    # Indexed on its own: the hand-out looks up one user's projects.
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = created_at_column()
