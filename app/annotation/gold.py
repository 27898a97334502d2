"""Gold sets: comparison sets an admin gave the known ranking. Rules for marking and listing them; the
hand-out mixes them in (service.next_task), app.quality.gold scores annotators on them, and the worker's
snapshot leaves them out of training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation.tiers import validate_tiers
from app.errors import NotFound
from app.orm import Candidate, ComparisonSet, ComparisonSetItem, Prompt, Ranking, SetStatus


@dataclass(frozen=True)
class GoldSet:
    set_id: int
    project_id: int
    tiers: list[list[int]]
    rankings: int  # live rankings of it so far (each scored against the tiers)


def _visible_candidates(session: Session, set_id: int) -> list[int]:
    return list(
        session.scalars(
            select(ComparisonSetItem.candidate_id)
            .join(Candidate, Candidate.id == ComparisonSetItem.candidate_id)
            .where(ComparisonSetItem.set_id == set_id, Candidate.hidden.is_(False))
            .order_by(ComparisonSetItem.position)
        )
    )


def mark_gold(session: Session, set_id: int, tiers: Sequence[Sequence[int]]) -> GoldSet:
    """Make a set gold with this known ranking of all its visible candidates (best tier first; a tier of
    several ids is a tie). It is (re)opened: gold sets stay open for every annotator."""
    cset = session.get(ComparisonSet, set_id, with_for_update=True)
    if cset is None:
        raise NotFound(f"no comparison set {set_id}")
    checked = validate_tiers([list(t) for t in tiers], _visible_candidates(session, set_id))
    cset.gold_tiers = checked
    cset.status = SetStatus.open
    session.flush()
    return gold_set(session, set_id)


def unmark_gold(session: Session, set_id: int) -> None:
    """Make a gold set ordinary again (its rankings then count as training data like any other)."""
    cset = session.get(ComparisonSet, set_id, with_for_update=True)
    if cset is None:
        raise NotFound(f"no comparison set {set_id}")
    cset.gold_tiers = None
    session.flush()


def _rankings_of(session: Session, set_ids: Sequence[int]) -> dict[int, int]:
    if not set_ids:
        return {}
    rows = session.execute(
        select(Ranking.set_id, func.count())
        .where(Ranking.set_id.in_(list(set_ids)), Ranking.dropped.is_(False))
        .group_by(Ranking.set_id)
    ).all()
    return {int(s): int(n) for s, n in rows}


def gold_set(session: Session, set_id: int) -> GoldSet:
    cset = session.get(ComparisonSet, set_id)
    if cset is None or cset.gold_tiers is None:
        raise NotFound(f"comparison set {set_id} is not a gold set")
    counts = _rankings_of(session, [set_id])
    return GoldSet(cset.id, cset.project_id, cset.gold_tiers, counts.get(cset.id, 0))


def gold_sets(session: Session, project_id: int | None = None, limit: int = 500) -> list[GoldSet]:
    """Gold sets, newest first (of one project, or of all)."""
    stmt = select(ComparisonSet).where(ComparisonSet.gold_tiers.is_not(None))
    if project_id is not None:
        stmt = stmt.where(ComparisonSet.project_id == project_id)
    sets = list(session.scalars(stmt.order_by(ComparisonSet.id.desc()).limit(limit)))
    counts = _rankings_of(session, [s.id for s in sets])
    return [GoldSet(s.id, s.project_id, s.gold_tiers or [], counts.get(s.id, 0)) for s in sets]


@dataclass(frozen=True)
class SetView:
    """A comparison set as an admin chooses or marks gold: its prompt, its visible candidates (id, text) in
    set order, and its known ranking when it is gold."""

    set_id: int
    project_id: int
    status: str
    prompt: str
    candidates: list[tuple[int, str]]
    gold_tiers: list[list[int]] | None


def _views(session: Session, sets: Sequence[ComparisonSet]) -> list[SetView]:
    if not sets:
        return []
    prompts = dict(
        session.execute(
            select(Prompt.id, Prompt.text).where(Prompt.id.in_({s.prompt_id for s in sets}))
        ).all()
    )
    members: dict[int, list[tuple[int, str]]] = {}
    for set_id, cid, text in session.execute(
        select(ComparisonSetItem.set_id, Candidate.id, Candidate.text)
        .join(Candidate, Candidate.id == ComparisonSetItem.candidate_id)
        .where(ComparisonSetItem.set_id.in_([s.id for s in sets]), Candidate.hidden.is_(False))
        .order_by(ComparisonSetItem.set_id, ComparisonSetItem.position)
    ):
        members.setdefault(int(set_id), []).append((int(cid), str(text)))
    return [
        SetView(
            s.id,
            s.project_id,
            s.status.value,
            str(prompts.get(s.prompt_id, "")),
            members.get(s.id, []),
            s.gold_tiers,
        )
        for s in sets
    ]


def set_view(session: Session, set_id: int) -> SetView:
    cset = session.get(ComparisonSet, set_id)
    if cset is None:
        raise NotFound(f"no comparison set {set_id}")
    return _views(session, [cset])[0]


def gold_views(session: Session, project_id: int | None = None, limit: int = 500) -> list[SetView]:
    """Gold sets with their prompt and candidates, newest first."""
    stmt = select(ComparisonSet).where(ComparisonSet.gold_tiers.is_not(None))
    if project_id is not None:
        stmt = stmt.where(ComparisonSet.project_id == project_id)
    return _views(session, list(session.scalars(stmt.order_by(ComparisonSet.id.desc()).limit(limit))))


def open_sets(session: Session, project_id: int | None = None, limit: int = 20) -> list[SetView]:
    """Open ordinary sets, newest first: those an admin may choose to mark gold."""
    stmt = select(ComparisonSet).where(
        ComparisonSet.gold_tiers.is_(None), ComparisonSet.status == SetStatus.open
    )
    if project_id is not None:
        stmt = stmt.where(ComparisonSet.project_id == project_id)
    return _views(session, list(session.scalars(stmt.order_by(ComparisonSet.id.desc()).limit(limit))))


def tiers_from_places(places: dict[int, int]) -> list[list[int]]:
    """A ranking from each candidate's place (1 = best; equal places are a tie), best tier first."""
    by_place: dict[int, list[int]] = {}
    for candidate_id, place in places.items():
        by_place.setdefault(place, []).append(candidate_id)
    return [sorted(by_place[p]) for p in sorted(by_place)]
