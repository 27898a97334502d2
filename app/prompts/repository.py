"""Queries and inserts for prompt sets, prompts, candidates and imported comparison sets and rankings.

Imports use the first part; the admin pages read prompt sets (their sizes, tags, settings) and the
prompts two versions both answered from the second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import and_, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.orm import (
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    SetStatus,
)

# Bounds the size of one IN (...) list.
CHUNK = 1000
T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _project(session: Session, project_id: int | None) -> int:
    """The project id given, or the default project's (the database creates it on first use)."""
    if project_id is not None:
        return project_id
    return int(session.execute(select(func.rankloop_default_project())).scalar_one())


def get_prompt_set_by_name(session: Session, name: str, project_id: int | None = None) -> PromptSet | None:
    """The project's prompt set with this name (names are unique per project; None: the default
    project), or None."""
    return session.scalars(
        select(PromptSet).where(PromptSet.name == name, PromptSet.project_id == _project(session, project_id))
    ).one_or_none()


def prompt_sets_named(session: Session, name: str) -> Sequence[PromptSet]:
    """Every project's prompt set with this name, by id."""
    return session.scalars(select(PromptSet).where(PromptSet.name == name).order_by(PromptSet.id)).all()


def get_or_add_prompt_set(
    session: Session, name: str, description: str = "", project_id: int | None = None
) -> PromptSet:
    """The project's prompt set with this name, inserted if missing (None: the default project), safe
    against a concurrent insert."""
    project_id = _project(session, project_id)
    found = get_prompt_set_by_name(session, name, project_id)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            prompt_set = PromptSet(name=name, description=description, project_id=project_id)
            session.add(prompt_set)
        return prompt_set
    except IntegrityError:
        # Another transaction created it first (names are unique per project): use theirs.
        found = get_prompt_set_by_name(session, name, project_id)
        assert found is not None
        return found


def get_model_version_by_name(
    session: Session, name: str, project_id: int | None = None
) -> ModelVersion | None:
    """The project's model version with this name (unique per project; None: the default project)."""
    return session.scalars(
        select(ModelVersion).where(
            ModelVersion.name == name, ModelVersion.project_id == _project(session, project_id)
        )
    ).one_or_none()


def get_or_add_external_model_version(
    session: Session, name: str, config: dict[str, object], project_id: int | None = None
) -> ModelVersion:
    """The project's model version with this name, else a new active external one of the project (the
    author of texts imported into it; None: the default project)."""
    project_id = _project(session, project_id)
    found = get_model_version_by_name(session, name, project_id)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            version = ModelVersion(
                name=name,
                kind=ModelKind.external,
                status=ModelStatus.active,
                config=config,
                project_id=project_id,
            )
            session.add(version)
        return version
    except IntegrityError:
        found = get_model_version_by_name(session, name, project_id)
        assert found is not None
        return found


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


def rankings_of_annotator(
    session: Session, annotator_id: int, set_ids: Sequence[int]
) -> list[tuple[int, list[list[int]]]]:
    """(set id, tiers) of the annotator's rankings of these sets, dropped ones included."""
    found: list[tuple[int, list[list[int]]]] = []
    for chunk in _chunks(set_ids):
        rows = session.execute(
            select(Ranking.set_id, Ranking.tiers).where(
                Ranking.annotator_id == annotator_id, Ranking.set_id.in_(chunk)
            )
        )
        found.extend((int(r[0]), [[int(c) for c in tier] for tier in r[1]]) for r in rows)
    return found


def add_all(session: Session, rows: Sequence[object]) -> None:
    """Insert rows in one flush (batched INSERT ... RETURNING), so they have ids."""
    session.add_all(rows)
    session.flush()


# --- prompt sets and prompts on the admin pages ---------------------------------------------------------


def count_prompt_sets(session: Session, project_id: int | None = None) -> int:
    """How many prompt sets there are (in one project)."""
    stmt = select(func.count()).select_from(PromptSet)
    if project_id is not None:
        stmt = stmt.where(PromptSet.project_id == project_id)
    return int(session.scalar(stmt) or 0)


def count_prompts(session: Session, project_id: int | None = None) -> int:
    """How many prompts there are, in all prompt sets (of one project)."""
    stmt = select(func.count()).select_from(Prompt)
    if project_id is not None:
        stmt = stmt.where(
            Prompt.prompt_set_id.in_(select(PromptSet.id).where(PromptSet.project_id == project_id))
        )
    return int(session.scalar(stmt) or 0)


def all_prompt_sets(session: Session, project_id: int | None = None) -> list[tuple[int, str]]:
    """(id, name) of every prompt set (of one project), by name."""
    stmt = select(PromptSet.id, PromptSet.name).order_by(PromptSet.name, PromptSet.id)
    if project_id is not None:
        stmt = stmt.where(PromptSet.project_id == project_id)
    return [(int(i), str(n)) for i, n in session.execute(stmt)]


def get_prompt_set(session: Session, prompt_set_id: int) -> PromptSet | None:
    """One prompt set by id."""
    return session.get(PromptSet, prompt_set_id)


@dataclass(frozen=True)
class PromptSetRow:
    id: int
    name: str
    description: str
    priority: int
    paused: bool
    prompts: int
    tags: list[str]
    open_sets: int
    sets: int
    rankings: int  # live ones
    # Prompts in no comparison set at all: no annotator sees them until a generation job writes candidates.
    without_candidates: int = 0


def count_prompts_without_sets(session: Session, prompt_set_id: int) -> int:
    """Prompts of the set in no comparison set at all: no annotator sees them until candidates exist."""
    stmt = (
        select(func.count())
        .select_from(Prompt)
        .where(
            Prompt.prompt_set_id == prompt_set_id,
            ~exists(select(ComparisonSet.id).where(ComparisonSet.prompt_id == Prompt.id)),
        )
    )
    return int(session.scalar(stmt) or 0)


def prompt_set_rows(session: Session, limit: int, offset: int) -> list[PromptSetRow]:
    """Prompt sets by priority then name, with prompt, set and ranking counts and their most common tags."""
    page = (
        select(PromptSet.id)
        .order_by(PromptSet.priority.desc(), PromptSet.name)
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    prompts = (
        select(Prompt.prompt_set_id, func.count().label("n"))
        .where(Prompt.prompt_set_id.in_(select(page.c.id)))
        .group_by(Prompt.prompt_set_id)
        .subquery()
    )
    sets = (
        select(
            Prompt.prompt_set_id,
            func.count().label("n"),
            func.count().filter(ComparisonSet.status == SetStatus.open).label("open"),
        )
        .join(ComparisonSet, ComparisonSet.prompt_id == Prompt.id)
        .where(Prompt.prompt_set_id.in_(select(page.c.id)))
        .group_by(Prompt.prompt_set_id)
        .subquery()
    )
    bare = (
        select(Prompt.prompt_set_id, func.count().label("n"))
        .where(
            Prompt.prompt_set_id.in_(select(page.c.id)),
            ~exists(select(ComparisonSet.id).where(ComparisonSet.prompt_id == Prompt.id)),
        )
        .group_by(Prompt.prompt_set_id)
        .subquery()
    )
    ranked = (
        select(Prompt.prompt_set_id, func.count().label("n"))
        .join(ComparisonSet, ComparisonSet.prompt_id == Prompt.id)
        .join(Ranking, Ranking.set_id == ComparisonSet.id)
        .where(Prompt.prompt_set_id.in_(select(page.c.id)), Ranking.dropped.is_(False))
        .group_by(Prompt.prompt_set_id)
        .subquery()
    )
    stmt = (
        select(
            PromptSet,
            func.coalesce(prompts.c.n, 0),
            func.coalesce(sets.c.open, 0),
            func.coalesce(sets.c.n, 0),
            func.coalesce(ranked.c.n, 0),
            func.coalesce(bare.c.n, 0),
        )
        .join(page, page.c.id == PromptSet.id)
        .outerjoin(prompts, prompts.c.prompt_set_id == PromptSet.id)
        .outerjoin(sets, sets.c.prompt_set_id == PromptSet.id)
        .outerjoin(ranked, ranked.c.prompt_set_id == PromptSet.id)
        .outerjoin(bare, bare.c.prompt_set_id == PromptSet.id)
        .order_by(PromptSet.priority.desc(), PromptSet.name)
    )
    rows = session.execute(stmt).all()
    tags = top_tags(session, [ps.id for ps, *_ in rows], 6)
    return [
        PromptSetRow(
            ps.id,
            ps.name,
            ps.description,
            ps.priority,
            ps.paused,
            int(n),
            tags.get(ps.id, []),
            int(o),
            int(s),
            int(r),
            int(b),
        )
        for ps, n, o, s, r, b in rows
    ]


def top_tags(session: Session, prompt_set_ids: Sequence[int], per_set: int) -> dict[int, list[str]]:
    """Prompt set id -> its most used tags (most prompts first)."""
    if not prompt_set_ids:
        return {}
    tag = func.unnest(Prompt.tags).label("tag")
    tagged = (
        select(Prompt.prompt_set_id, tag).where(Prompt.prompt_set_id.in_(list(prompt_set_ids))).subquery()
    )
    counted = (
        select(
            tagged.c.prompt_set_id,
            tagged.c.tag,
            func.row_number()
            .over(partition_by=tagged.c.prompt_set_id, order_by=(func.count().desc(), tagged.c.tag))
            .label("rank"),
        )
        .group_by(tagged.c.prompt_set_id, tagged.c.tag)
        .subquery()
    )
    stmt = (
        select(counted.c.prompt_set_id, counted.c.tag)
        .where(counted.c.rank <= per_set)
        .order_by(counted.c.prompt_set_id, counted.c.rank)
    )
    out: dict[int, list[str]] = {}
    for set_id, name in session.execute(stmt):
        out.setdefault(int(set_id), []).append(str(name))
    return out


def _shared_prompts(version_a: int, version_b: int) -> Any:
    """Prompts with candidates from both versions."""
    has_a = select(Candidate.id).where(
        Candidate.prompt_id == Prompt.id, Candidate.model_version_id == version_a
    )
    has_b = select(Candidate.id).where(
        Candidate.prompt_id == Prompt.id, Candidate.model_version_id == version_b
    )
    return and_(has_a.exists(), has_b.exists())


def count_shared_prompts(session: Session, version_a: int, version_b: int) -> int:
    """How many prompts both versions answered."""
    stmt = select(func.count()).select_from(Prompt).where(_shared_prompts(version_a, version_b))
    return int(session.scalar(stmt) or 0)


def shared_prompts(
    session: Session, version_a: int, version_b: int, limit: int, offset: int
) -> Sequence[Prompt]:
    """Prompts both versions answered, newest first."""
    stmt = (
        select(Prompt)
        .where(_shared_prompts(version_a, version_b))
        .order_by(Prompt.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return session.scalars(stmt).all()
