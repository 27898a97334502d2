"""What the admin pages show."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.admin import repository as repo


@dataclass(frozen=True)
class Overview:
    prompt_sets: int
    prompts: int
    sets: int
    open_sets: int
    rankings: int
    users: int


def overview(session: Session) -> Overview:
    """Counts of prompt sets, prompts, comparison sets, live rankings and users."""
    return Overview(**repo.table_counts(session))


def prompt_set_names(session: Session) -> list[str]:
    """The prompt sets an export can be limited to."""
    return repo.prompt_set_names(session)
