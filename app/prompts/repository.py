"""Queries and inserts for prompt sets, prompts, candidates and imported comparison sets and rankings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.orm import (
    Assignment,
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
)

# Bounds the size of one IN (...) list.
CHUNK = 1000
T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def get_prompt_set_by_name(session: Session, name: str) -> PromptSet | None:
    """The prompt set with this name, or None."""
    return session.scalars(select(PromptSet).where(PromptSet.name == name)).one_or_none()


def get_or_add_prompt_set(session: Session, name: str, description: str = "") -> PromptSet:
    """The prompt set with this name, inserted if missing (safe against a concurrent insert)."""
    found = get_prompt_set_by_name(session, name)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            prompt_set = PromptSet(name=name, description=description)
            session.add(prompt_set)
        return prompt_set
    except IntegrityError:
        # Another transaction created it first (names are unique): use theirs.
        return session.scalars(select(PromptSet).where(PromptSet.name == name)).one()


def get_model_version_by_name(session: Session, name: str) -> ModelVersion | None:
    """The model version with this name, or None."""
    return session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one_or_none()


def get_or_add_external_model_version(session: Session, name: str, config: dict[str, object]) -> ModelVersion:
    """The model version with this name, else a new active external one (the author of imported texts)."""
    found = get_model_version_by_name(session, name)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            version = ModelVersion(
                name=name, kind=ModelKind.external, status=ModelStatus.active, config=config
            )
            session.add(version)
        return version
    except IntegrityError:
        return session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one()


def prompts_by_text(session: Session, prompt_set_id: int, texts: Sequence[str]) -> dict[str, Prompt]:
    """Prompts of a set whose text is one of `texts`, keyed by text (the oldest one per text)."""
    found: dict[str, Prompt] = {}
    for chunk in _chunks(texts):
        rows = session.scalars(
            select(Prompt)
            .where(Prompt.prompt_set_id == prompt_set_id, Prompt.text.in_(chunk))
            .order_by(Prompt.id)
        )
        for prompt in rows:
            found.setdefault(prompt.text, prompt)
    return found


def candidates_of_prompts(session: Session, prompt_ids: Sequence[int]) -> list[Candidate]:
    """Every candidate of these prompts."""
    found: list[Candidate] = []
    for chunk in _chunks(prompt_ids):
        found.extend(session.scalars(select(Candidate).where(Candidate.prompt_id.in_(chunk))))
    return found


def set_items_of_prompts(session: Session, prompt_ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(set id, prompt id, candidate id) for every comparison set of these prompts."""
    found: list[tuple[int, int, int]] = []
    for chunk in _chunks(prompt_ids):
        rows = session.execute(
            select(ComparisonSet.id, ComparisonSet.prompt_id, ComparisonSetItem.candidate_id)
            .join(ComparisonSetItem, ComparisonSetItem.set_id == ComparisonSet.id)
            .where(ComparisonSet.prompt_id.in_(chunk))
        )
        found.extend((r[0], r[1], r[2]) for r in rows)
    return found


def sets_with_assignment_of(session: Session, annotator_id: int, set_ids: Sequence[int]) -> set[int]:
    """Which of these sets the annotator has an assignment for."""
    found: set[int] = set()
    for chunk in _chunks(set_ids):
        found.update(
            session.scalars(
                select(Assignment.set_id).where(
                    Assignment.annotator_id == annotator_id, Assignment.set_id.in_(chunk)
                )
            )
        )
    return found


def add_all(session: Session, rows: Sequence[object]) -> None:
    """Insert rows in one flush (batched INSERT ... RETURNING), so they have ids."""
    session.add_all(rows)
    session.flush()
