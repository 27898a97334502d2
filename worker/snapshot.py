"""The round's data, read from the database: the frozen snapshot and the texts the trainers take.

A snapshot freezes exactly which rankings a round uses (ranking ids + sha256), so a retried round trains on
the same data. The reads turn rows into the plain data of worker/data.py; nothing here trains.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.conversation import PromptLike, from_stored
from app.orm import (
    Candidate,
    ComparisonSet,
    DataSnapshot,
    ModelKind,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    Round,
)
from app.quality.stats import mean_tier_consensus
from app.training.rounds import DEMONSTRATION_SOURCE, HUMAN_MARK
from worker.data import Ranking as TrainRanking


class NoTrainingData(ValueError):
    """Nothing to train on yet; the message tells the admin what to do."""


@dataclass(frozen=True)
class Snapshot:
    id: int
    ranking_ids: list[int]
    sha256: str


def snapshot_digest(rows: Sequence[tuple[int, list[Any], bool]]) -> str:
    """sha256 over the rankings' ids, tiers and all-bad flags, in id order: same data, same digest."""
    canonical = json.dumps([[i, t, b] for i, t, b in sorted(rows, key=lambda r: r[0])], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def get_or_create_snapshot(session: Session, round_id: int, max_rankings: int) -> Snapshot:
    """The round's frozen ranking set: reused on a retry, else every ranking not dropped (newest N)."""
    round_ = session.get(Round, round_id, with_for_update=True)
    assert round_ is not None
    if round_.data_snapshot_id is not None:
        snap = session.get(DataSnapshot, round_.data_snapshot_id)
        assert snap is not None
        return Snapshot(snap.id, [int(i) for i in snap.ranking_ids], snap.sha256)
    # The round's project's rankings only: each project trains its own reward model and policy. Rankings
    # of gold sets never: they score annotators (app.quality.gold), they are not training data.
    stmt = (
        select(Ranking.id, Ranking.tiers, Ranking.all_bad)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .where(
            Ranking.dropped.is_(False),
            ComparisonSet.project_id == round_.project_id,
            ComparisonSet.gold_tiers.is_(None),
        )
    )
    stmt = stmt.order_by(Ranking.id.desc())
    if max_rankings > 0:
        stmt = stmt.limit(max_rankings)
    rows = [(int(i), t, bool(b)) for i, t, b in session.execute(stmt).all()]
    if not rows:
        raise NoTrainingData("no rankings to train on yet: rank (or import) some comparison sets first")
    rows.sort(key=lambda r: r[0])
    ids = [r[0] for r in rows]
    snap = DataSnapshot(
        ranking_ids=ids, ranking_count=len(ids), max_ranking_id=ids[-1], sha256=snapshot_digest(rows)
    )
    session.add(snap)
    session.flush()
    round_.data_snapshot_id = snap.id
    return Snapshot(snap.id, ids, snap.sha256)


@dataclass
class RankedSet:
    """One ranking with the texts it ranks, still knowing where each text came from."""

    ranking_id: int
    set_id: int
    prompt_id: int
    prompt: PromptLike
    candidate_ids: list[int]
    texts: list[str]
    human: list[bool]
    tiers: list[list[int]]  # indexes into texts, best first
    all_bad: bool
    annotator_id: int | None = None  # None for a merge of several annotators' rankings
    weight: float = 1.0  # the annotator's weight (a merge: the mean of its rankings' weights)

    def to_train(self) -> TrainRanking:
        return TrainRanking(
            self.prompt, list(self.texts), [list(t) for t in self.tiers], self.all_bad, self.weight
        )


@dataclass
class TrainingData:
    sets: list[RankedSet]
    rankings: list[TrainRanking]
    demonstrations: list[tuple[PromptLike, str]] = field(default_factory=list)
    prompt_ids: dict[PromptLike, int] = field(default_factory=dict)


def load_training_data(
    session: Session,
    ranking_ids: Sequence[int],
    multi_annotator: str,
    weights: Mapping[int, float] | None = None,
) -> TrainingData:
    """The snapshot's rankings as texts, merged per set when `multi_annotator` is 'consensus', each with its
    annotator's weight (`weights`, annotator id -> weight; 1 for anyone not in it). A set made gold after
    the snapshot was frozen is left out all the same: gold is never trained on."""
    weights = weights or {}
    rows = session.execute(
        select(Ranking, Prompt.id, Prompt.text, Prompt.messages)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(Ranking.id.in_(list(ranking_ids)), ComparisonSet.gold_tiers.is_(None))
        .order_by(Ranking.id)
    ).all()
    candidate_ids = {int(c) for r, *_ in rows for tier in r.tiers for c in tier}
    candidates = {
        c.id: (c.text, human)
        for c, human in session.execute(
            select(Candidate, is_human_version())
            .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
            .where(Candidate.id.in_(candidate_ids))
        ).all()
    }
    sets: list[RankedSet] = []
    for ranking, prompt_id, prompt_text, messages in rows:
        ids = [int(c) for tier in ranking.tiers for c in tier]
        index = {c: i for i, c in enumerate(ids)}
        sets.append(
            RankedSet(
                ranking_id=ranking.id,
                set_id=ranking.set_id,
                prompt_id=prompt_id,
                prompt=from_stored(prompt_text, messages),
                candidate_ids=ids,
                texts=[candidates[c][0] for c in ids],
                human=[bool(candidates[c][1]) for c in ids],
                tiers=[[index[int(c)] for c in tier] for tier in ranking.tiers],
                all_bad=ranking.all_bad,
                annotator_id=ranking.annotator_id,
                weight=float(weights.get(ranking.annotator_id, 1.0)),
            )
        )
    if multi_annotator == "consensus":
        sets = consensus(sets)
    demos = [
        (s.prompt, s.texts[i]) for s in sets if not s.all_bad and s.tiers for i in s.tiers[0] if s.human[i]
    ]
    demos += demonstrations(session)
    return TrainingData(
        sets=sets,
        rankings=[s.to_train() for s in sets],
        demonstrations=list(dict.fromkeys(demos)),
        prompt_ids={s.prompt: s.prompt_id for s in sets},
    )


def is_human_version() -> Any:
    """Model versions whose texts people wrote: external, "human" in the name or the config."""
    return (ModelVersion.kind == ModelKind.external) & (
        ModelVersion.name.ilike(f"%{HUMAN_MARK}%") | (ModelVersion.config[HUMAN_MARK].as_boolean().is_(True))
    )


def consensus(sets: Sequence[RankedSet]) -> list[RankedSet]:
    """One ranking per comparison set, merged by app.quality's `mean_tier_consensus` (mean tier, Borda).

    The dashboard shows the same merge as "training merge"; candidates come out best first, ties by id.
    Annotators of weight 0 are left out of the merge (a set only they ranked is dropped); the merge weighs
    the mean of the remaining rankings' weights.
    """
    by_set: dict[int, list[RankedSet]] = defaultdict(list)
    for s in sets:
        if s.weight > 0:
            by_set[s.set_id].append(s)
    merged: list[RankedSet] = []
    for group in by_set.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        first = group[0]
        tiers_by_id, all_bad = mean_tier_consensus(
            [([[g.candidate_ids[i] for i in tier] for tier in g.tiers], g.all_bad) for g in group]
        )
        ids = [c for tier in tiers_by_id for c in tier]
        index = {c: i for i, c in enumerate(ids)}
        text_of = {
            c: (t, h) for g in group for c, t, h in zip(g.candidate_ids, g.texts, g.human, strict=True)
        }
        merged.append(
            RankedSet(
                ranking_id=min(g.ranking_id for g in group),
                set_id=first.set_id,
                prompt_id=first.prompt_id,
                prompt=first.prompt,
                candidate_ids=ids,
                texts=[text_of[c][0] for c in ids],
                human=[text_of[c][1] for c in ids],
                tiers=[[index[c] for c in tier] for tier in tiers_by_id],
                all_bad=all_bad,
                weight=sum(g.weight for g in group) / len(group),
            )
        )
    return merged


def demonstrations(session: Session) -> list[tuple[PromptLike, str]]:
    """Imported demonstrations: (prompt, reply a person wrote for it)."""
    rows = session.execute(
        select(Prompt.text, Prompt.messages, Candidate.text)
        .join(Candidate, Candidate.prompt_id == Prompt.id)
        .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
        .where(
            ModelVersion.kind == ModelKind.external,
            ModelVersion.config["source"].as_string() == DEMONSTRATION_SOURCE,
            Candidate.hidden.is_(False),
        )
        .order_by(Candidate.id)
    ).all()
    return [(from_stored(p, m), c) for p, m, c in rows]


def _gold_of_prompt() -> Any:
    return select(ComparisonSet.id).where(
        ComparisonSet.prompt_id == Prompt.id, ComparisonSet.gold_tiers.is_not(None)
    )


def unlabelled_prompts(
    session: Session, limit: int, seed: int, project_id: int | None = None
) -> list[PromptLike]:
    """Prompts (of the project) nobody has ranked yet (for reward-model-labelled pairs and RLOO), a seeded
    sample of at most `limit`; never the prompt of a gold set (held out from training)."""
    if limit <= 0:
        return []
    ranked = (
        select(ComparisonSet.prompt_id)
        .join(Ranking, Ranking.set_id == ComparisonSet.id)
        .where(ComparisonSet.prompt_id == Prompt.id, Ranking.dropped.is_(False))
    )
    rows = session.execute(
        select(Prompt.text, Prompt.messages)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .where(~exists(ranked), ~exists(_gold_of_prompt()), PromptSet.paused.is_(False))
        .where(*([] if project_id is None else [PromptSet.project_id == project_id]))
        .order_by(Prompt.id)
    ).all()
    texts = list(dict.fromkeys(from_stored(t, m) for t, m in rows))
    random.Random(seed).shuffle(texts)
    return texts[:limit]
