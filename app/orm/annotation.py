"""Candidates, the sets they are compared in, and the annotators' work on them."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.orm.base import Base, created_at_column, str_enum


class Candidate(Base):
    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    generation_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int | None] = mapped_column(Integer)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Cut off at the generation's max_new_tokens (set by the worker, which knows the finish reason); an
    # imported candidate is taken as complete. The ranking page marks truncated ones.
    truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[dt.datetime] = created_at_column()


class SetStatus(enum.StrEnum):
    open = "open"  # wants more annotators
    closed = "closed"  # reached its overlap, or was retired by an admin


class ComparisonSet(Base):
    __tablename__ = "comparison_sets"
    __table_args__ = (
        CheckConstraint("overlap >= 1", name="overlap_positive"),
        Index("ix_comparison_sets_open", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    overlap: Mapped[int] = mapped_column(Integer)
    status: Mapped[SetStatus] = mapped_column(str_enum(SetStatus, "set_status"), default=SetStatus.open)
    source: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[dt.datetime] = created_at_column()
    # The hand-out order (see ix_comparison_sets_handout below), kept by database triggers (migration
    # 0003): the prompt set's and the prompt's priority, and the number of submitted assignments. They let
    # the next task come from an index walk instead of sorting every open set. Never written by the app.
    prompt_set_priority: Mapped[int] = mapped_column(Integer, server_default="0")
    prompt_priority: Mapped[int] = mapped_column(Integer, server_default="0")
    submitted_count: Mapped[int] = mapped_column(Integer, server_default="0")
    # The prompt set's project, copied by the same triggers (migration 0010): the hand-out filters on it
    # during its index walk, and per-project statistics and exports need no join to prompt sets.
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id"), index=True, server_default=FetchedValue()
    )
    # Active selection (migration 0013, app/training/selection.py), written by the worker when it makes the
    # set: the round's `selection` ("" for sets made otherwise, e.g. imported), the hand-out priority it
    # got (0 unless chosen by uncertainty; ordered after the prompt set's and the prompt's priorities),
    # and the newest reward model's scores of its candidates with their uncertainty and spread, so the
    # effect of the choice can be analysed.
    selection: Mapped[str] = mapped_column(String(20), default="", server_default="")
    selection_priority: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    selection_scores: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    # A gold set's known ranking (candidate ids, best tier first); NULL for an ordinary set. Gold sets stay
    # open for everyone (no overlap), are mixed blind into the queue at the project's gold rate, score the
    # annotators who rank them (app.quality.gold) and never reach training (worker/snapshot.py).
    # none_as_null: None is SQL NULL (an ordinary set), never the JSON value null.
    gold_tiers: Mapped[list[Any] | None] = mapped_column(JSONB(none_as_null=True))

    items: Mapped[list[ComparisonSetItem]] = relationship(
        order_by="ComparisonSetItem.position", cascade="all, delete-orphan", lazy="selectin"
    )


# Best first, as handed out: priorities (the admin's, then active selection's), then sets closer to their
# overlap, then the oldest.
Index(
    "ix_comparison_sets_handout",
    ComparisonSet.prompt_set_priority.desc(),
    ComparisonSet.prompt_priority.desc(),
    ComparisonSet.selection_priority.desc(),
    ComparisonSet.submitted_count.desc(),
    ComparisonSet.created_at,
    ComparisonSet.id,
    postgresql_where=ComparisonSet.status == SetStatus.open,
)
# The open gold sets of a project: the gold pick of the hand-out reads only these.
Index(
    "ix_comparison_sets_gold",
    ComparisonSet.project_id,
    ComparisonSet.id,
    postgresql_where=ComparisonSet.gold_tiers.is_not(None) & (ComparisonSet.status == SetStatus.open),
)


class ComparisonSetItem(Base):
    __tablename__ = "comparison_set_items"

    set_id: Mapped[int] = mapped_column(
        ForeignKey("comparison_sets.id", ondelete="CASCADE"), primary_key=True
    )
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)


class AssignmentStatus(enum.StrEnum):
    leased = "leased"  # counts toward overlap only while lease_expires_at is in the future
    submitted = "submitted"
    skipped = "skipped"


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        # An annotator never gets the same set twice: an expired lease is renewed in place.
        UniqueConstraint("set_id", "annotator_id"),
        Index("ix_assignments_set_id_status", "set_id", "status"),
        Index("ix_assignments_annotator_id_status", "annotator_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("comparison_sets.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[AssignmentStatus] = mapped_column(str_enum(AssignmentStatus, "assignment_status"))
    # Candidate ids in the order this annotator sees them: shuffled once, stored, shown the same on reload.
    display_order: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    leased_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Ranking(Base):
    __tablename__ = "rankings"
    __table_args__ = (Index("ix_rankings_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # UNIQUE: the database itself refuses a second ranking of one assignment.
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("comparison_sets.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Best first; a tier with several candidate ids is a tie.
    tiers: Mapped[list[Any]] = mapped_column()
    all_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    # {"<candidate id>": ["unsafe", "incorrect"]}
    flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rationale: Mapped[str] = mapped_column(Text, default="")
    display_order: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    # What the client reports (the page's own timer, an API caller's claim): kept as an extra only.
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    # Measured by the server: the lease handed out (assignment.leased_at) to the submission. The admin
    # timing figures use this one; None for imported rankings.
    server_seconds: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20), default="web")
    # sha256 of the canonical submission: an identical repeat is recognised and answered, not stored.
    fingerprint: Mapped[str] = mapped_column(String(64))
    dropped: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[dt.datetime] = created_at_column()


class Skip(Base):
    __tablename__ = "skips"

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("comparison_sets.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_column()
