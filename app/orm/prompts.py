"""What annotators are asked about: prompt sets and prompts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, FetchedValue, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, created_at_column


class PromptSet(Base):
    __tablename__ = "prompt_sets"
    # Unique within a project (migration 0011): two projects may each have one of the name.
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Filled by a database trigger with the default project when not given (migration 0010), so every
    # writer (older clients, the demo, imports, psql) lands somewhere.
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id"), index=True, server_default=FetchedValue()
    )
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[dt.datetime] = created_at_column()


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (Index("ix_prompts_tags", "tags", postgresql_using="gin"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_set_id: Mapped[int] = mapped_column(ForeignKey("prompt_sets.id", ondelete="CASCADE"), index=True)
    # A conversation's flattened text ("User: ...\n\nAssistant: ...") for search, display and the standard
    # exports; the plain prompt itself otherwise.
    text: Mapped[str] = mapped_column(Text)
    # The conversation, TRL's message list ending with a user turn (app.conversation); None: a plain prompt.
    messages: Mapped[list[Any] | None] = mapped_column(default=None)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list, server_default="{}")
    source: Mapped[str] = mapped_column(String(200), default="", server_default="")
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = created_at_column()
