"""Queries for exports: rankings page by page (keyset on id); their sets' candidates come from
app.annotation.review_repository.set_members."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.orm import ComparisonSet, Prompt, PromptSet, Ranking


@dataclass(frozen=True)
class ExportFilter:
    prompt_set_id: int | None = None
    since: dt.datetime | None = None
    project_id: int | None = None
    # Pairs leave out all-bad rankings: "everything is bad" orders nothing.
    exclude_all_bad: bool = False


@dataclass(frozen=True)
class RankingRow:
    ranking: Ranking
    prompt: Prompt
    prompt_set: str


def rankings_page(session: Session, filters: ExportFilter, after_id: int, limit: int) -> list[RankingRow]:
    """Up to `limit` live (not dropped) rankings after `after_id`, by id, with prompt and prompt set name.
    Rankings of gold sets are left out: they score annotators and are not training data."""
    query = (
        select(Ranking, Prompt, PromptSet.name)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .where(Ranking.id > after_id, Ranking.dropped.is_(False), ComparisonSet.gold_tiers.is_(None))
        .order_by(Ranking.id)
        .limit(limit)
    )
    if filters.prompt_set_id is not None:
        query = query.where(Prompt.prompt_set_id == filters.prompt_set_id)
    if filters.since is not None:
        query = query.where(Ranking.created_at >= filters.since)
    if filters.project_id is not None:
        query = query.where(ComparisonSet.project_id == filters.project_id)
    if filters.exclude_all_bad:
        query = query.where(Ranking.all_bad.is_(False))
    return [RankingRow(r[0], r[1], r[2]) for r in session.execute(query)]
