"""New comparison sets: which prompts need candidates, and storing the generated ones as open sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.orm import (
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    Prompt,
    PromptSet,
    Ranking,
    RewardScore,
    SetStatus,
)


@dataclass(frozen=True)
class PromptToFill:
    id: int
    text: str


def prompts_needing_work(session: Session, limit: int) -> list[PromptToFill]:
    """Prompts of unpaused sets without an open comparison set, most wanted first, fewest rankings first."""
    if limit <= 0:
        return []
    open_set = select(ComparisonSet.id).where(
        ComparisonSet.prompt_id == Prompt.id, ComparisonSet.status == SetStatus.open
    )
    rankings = (
        select(func.count())
        .select_from(Ranking)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .where(ComparisonSet.prompt_id == Prompt.id)
        .correlate(Prompt)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Prompt.id, Prompt.text)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .where(PromptSet.paused.is_(False), ~exists(open_set))
        .order_by(PromptSet.priority.desc(), Prompt.priority.desc(), rankings, Prompt.id)
        .limit(limit)
    ).all()
    return [PromptToFill(int(i), t) for i, t in rows]


@dataclass(frozen=True)
class NewCandidate:
    model_version_id: int
    text: str
    seed: int
    params: dict[str, Any]
    truncated: bool  # cut at max_new_tokens


def store_sets(
    session: Session, sets: Sequence[tuple[int, list[NewCandidate]]], overlap: int, source: str
) -> list[list[int]]:
    """Candidates plus one open comparison set per prompt; sets with fewer than two candidates are skipped.

    Returns the new candidate ids of each stored set, in the order given.
    """
    made: list[list[int]] = []
    for prompt_id, candidates in sets:
        if len(candidates) < 2:
            continue
        rows = [
            Candidate(
                prompt_id=prompt_id,
                model_version_id=c.model_version_id,
                text=c.text,
                generation_params=c.params,
                seed=c.seed,
                truncated=c.truncated,
            )
            for c in candidates
        ]
        session.add_all(rows)
        session.flush()
        session.add(
            ComparisonSet(
                prompt_id=prompt_id,
                overlap=overlap,
                status=SetStatus.open,
                source=source[:200],
                items=[ComparisonSetItem(candidate_id=r.id, position=i) for i, r in enumerate(rows)],
            )
        )
        made.append([r.id for r in rows])
    session.flush()
    return made


def store_reward_scores(
    session: Session, reward_version_id: int, scores: Sequence[tuple[int, float]]
) -> None:
    """A reward model's (candidate id, score) pairs for candidates it has not scored yet."""
    session.add_all(
        RewardScore(reward_version_id=reward_version_id, candidate_id=cid, score=float(score))
        for cid, score in scores
    )
    session.flush()
