"""New comparison sets: which prompts need candidates, the human-written replies that may join them, and
storing the generated ones as open sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.conversation import PromptLike, from_stored
from app.orm import (
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    ModelVersion,
    RewardScore,
    SetStatus,
)
from app.training import repository as training_repo
from worker.snapshot import is_human_version


@dataclass(frozen=True)
class PromptToFill:
    id: int
    prompt: PromptLike  # a text or a conversation (app.conversation)


def prompts_needing_work(
    session: Session, limit: int, prompt_set_id: int | None = None, project_id: int | None = None
) -> list[PromptToFill]:
    """Prompts of unpaused sets (or of one prompt set; of one project) without an open comparison set, most
    wanted first, fewest rankings first (the rule: app.training.repository.prompts_needing_work_stmt)."""
    if limit <= 0:
        return []
    stmt = training_repo.prompts_needing_work_stmt(prompt_set_id, project_id)
    rows = session.execute(stmt.limit(limit)).all()
    return [PromptToFill(int(i), from_stored(t, m)) for i, t, m in rows]


@dataclass(frozen=True)
class NewCandidate:
    model_version_id: int
    text: str
    seed: int
    params: dict[str, Any]
    truncated: bool  # cut at max_new_tokens


@dataclass(frozen=True)
class StoredCandidate:
    """A candidate already in the database (a human-written reply) that joins a new set as it is."""

    id: int
    model_version_id: int
    text: str


def human_replies(
    session: Session, prompt_ids: Sequence[int], per_prompt: int
) -> dict[int, list[StoredCandidate]]:
    """Up to `per_prompt` visible human-written replies of each prompt, those in the fewest sets first."""
    if per_prompt <= 0 or not prompt_ids:
        return {}
    in_sets = (
        select(func.count())
        .select_from(ComparisonSetItem)
        .where(ComparisonSetItem.candidate_id == Candidate.id)
        .correlate(Candidate)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Candidate.prompt_id, Candidate.id, Candidate.model_version_id, Candidate.text)
        .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
        .where(Candidate.prompt_id.in_(list(prompt_ids)), Candidate.hidden.is_(False), is_human_version())
        .order_by(Candidate.prompt_id, in_sets, Candidate.id)
    ).all()
    out: dict[int, list[StoredCandidate]] = {}
    for prompt_id, cid, version_id, text in rows:
        picked = out.setdefault(int(prompt_id), [])
        if len(picked) < per_prompt:
            picked.append(StoredCandidate(int(cid), int(version_id), str(text)))
    return out


@dataclass(frozen=True)
class SetSelection:
    """How a new set was chosen (app/training/selection.py): stored on its comparison_sets row."""

    selection: str  # the round's setting: random or uncertainty
    priority: float = 0.0  # hand-out priority; 0 unless chosen by uncertainty
    scores: dict[str, Any] = field(default_factory=dict)  # reward scores, uncertainty, spread, pick


def store_sets(
    session: Session,
    sets: Sequence[tuple[int, Sequence[NewCandidate | StoredCandidate]]],
    overlap: int,
    source: str,
    selections: Sequence[SetSelection] | None = None,
) -> list[list[int]]:
    """New candidates plus one open comparison set per prompt, in the order given (stored candidates join as
    they are), each with its selection (same order) when given; sets with fewer than two candidates are
    skipped.

    Returns the candidate ids of each stored set, in the order given.
    """
    made: list[list[int]] = []
    chosen = list(selections) if selections is not None else [SetSelection("")] * len(sets)
    for (prompt_id, members), how in zip(sets, chosen, strict=True):
        if len(members) < 2:
            continue
        rows = {
            i: Candidate(
                prompt_id=prompt_id,
                model_version_id=c.model_version_id,
                text=c.text,
                generation_params=c.params,
                seed=c.seed,
                truncated=c.truncated,
            )
            for i, c in enumerate(members)
            if isinstance(c, NewCandidate)
        }
        session.add_all(rows.values())
        session.flush()
        ids = [c.id if isinstance(c, StoredCandidate) else rows[i].id for i, c in enumerate(members)]
        session.add(
            ComparisonSet(
                prompt_id=prompt_id,
                overlap=overlap,
                status=SetStatus.open,
                source=source[:200],
                selection=how.selection,
                selection_priority=how.priority,
                selection_scores=how.scores,
                items=[ComparisonSetItem(candidate_id=cid, position=i) for i, cid in enumerate(ids)],
            )
        )
        made.append(ids)
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
