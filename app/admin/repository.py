"""Queries behind the admin pages."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.orm import ComparisonSet, Prompt, PromptSet, Ranking, SetStatus, User


def table_counts(session: Session) -> dict[str, int]:
    """Row counts of the tables the admin overview shows (live rankings only; users who can log in)."""
    queries = {
        "prompt_sets": select(func.count()).select_from(PromptSet),
        "prompts": select(func.count()).select_from(Prompt),
        "sets": select(func.count()).select_from(ComparisonSet),
        "open_sets": select(func.count())
        .select_from(ComparisonSet)
        .where(ComparisonSet.status == SetStatus.open),
        "rankings": select(func.count()).select_from(Ranking).where(Ranking.dropped.is_(False)),
        "users": select(func.count()).select_from(User).where(User.password_hash.is_not(None)),
    }
    return {name: int(session.scalar(query) or 0) for name, query in queries.items()}


def prompt_set_names(session: Session) -> list[str]:
    """Every prompt set name, alphabetically."""
    return list(session.scalars(select(PromptSet.name).order_by(PromptSet.name)))
