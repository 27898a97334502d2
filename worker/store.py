"""The training pipeline's database reads and writes (worker side: ORM only, no app services).

Reads turn rows into the plain data the ML functions take (worker/data.py); writes happen in short
transactions at well-defined points: the snapshot, the publication of finished versions, and each batch of
new comparison sets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.orm import (
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    DataSnapshot,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    Round,
    SetStatus,
)
from worker.data import Ranking as TrainRanking
from worker.queue import PROMOTION_LOCK_KEY

# An external model version whose candidates a person wrote; their first-ranked replies feed SFT.
HUMAN_MARK = "human"
DEMONSTRATION_SOURCE = "demonstration"


class NoTrainingData(ValueError):
    """Nothing to train on yet; the message tells the admin what to do."""


# --- snapshot -------------------------------------------------------------------------------------------


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
    stmt = select(Ranking.id, Ranking.tiers, Ranking.all_bad).where(Ranking.dropped.is_(False))
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


# --- training data --------------------------------------------------------------------------------------


@dataclass
class RankedSet:
    """One ranking with the texts it ranks, still knowing where each text came from."""

    ranking_id: int
    set_id: int
    prompt_id: int
    prompt: str
    candidate_ids: list[int]
    texts: list[str]
    human: list[bool]
    tiers: list[list[int]]  # indexes into texts, best first
    all_bad: bool

    def to_train(self) -> TrainRanking:
        return TrainRanking(self.prompt, list(self.texts), [list(t) for t in self.tiers], self.all_bad)


@dataclass
class TrainingData:
    sets: list[RankedSet]
    rankings: list[TrainRanking]
    demonstrations: list[tuple[str, str]] = field(default_factory=list)
    prompt_ids: dict[str, int] = field(default_factory=dict)


def load_training_data(session: Session, ranking_ids: Sequence[int], multi_annotator: str) -> TrainingData:
    """The snapshot's rankings as texts, merged per set when `multi_annotator` is 'consensus'."""
    rows = session.execute(
        select(Ranking, Prompt.id, Prompt.text)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(Ranking.id.in_(list(ranking_ids)))
        .order_by(Ranking.id)
    ).all()
    candidate_ids = {int(c) for r, _, _ in rows for tier in r.tiers for c in tier}
    candidates = {
        c.id: (c.text, human)
        for c, human in session.execute(
            select(Candidate, _is_human())
            .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
            .where(Candidate.id.in_(candidate_ids))
        ).all()
    }
    sets: list[RankedSet] = []
    for ranking, prompt_id, prompt_text in rows:
        ids = [int(c) for tier in ranking.tiers for c in tier]
        index = {c: i for i, c in enumerate(ids)}
        sets.append(
            RankedSet(
                ranking_id=ranking.id,
                set_id=ranking.set_id,
                prompt_id=prompt_id,
                prompt=prompt_text,
                candidate_ids=ids,
                texts=[candidates[c][0] for c in ids],
                human=[bool(candidates[c][1]) for c in ids],
                tiers=[[index[int(c)] for c in tier] for tier in ranking.tiers],
                all_bad=ranking.all_bad,
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


def _is_human() -> Any:
    return (ModelVersion.kind == ModelKind.external) & (
        ModelVersion.name.ilike(f"%{HUMAN_MARK}%") | (ModelVersion.config["human"].as_boolean().is_(True))
    )


def consensus(sets: Sequence[RankedSet]) -> list[RankedSet]:
    """One ranking per comparison set: candidates ordered by their mean tier (Borda), equal means tie.

    All-bad votes carry no order; a set most annotators called all-bad stays all-bad.
    """
    by_set: dict[int, list[RankedSet]] = defaultdict(list)
    for s in sets:
        by_set[s.set_id].append(s)
    merged: list[RankedSet] = []
    for group in by_set.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        first = group[0]
        ordered = [g for g in group if not g.all_bad]
        all_bad = len(ordered) * 2 < len(group)
        positions: dict[int, list[float]] = defaultdict(list)
        for g in ordered or group:
            for tier_index, tier in enumerate(g.tiers):
                for i in tier:
                    positions[g.candidate_ids[i]].append(tier_index)
        means = {c: round(sum(p) / len(p), 6) for c, p in positions.items()}
        ids = sorted(means, key=lambda c: (means[c], c))
        text_of = {
            c: (t, h) for g in group for c, t, h in zip(g.candidate_ids, g.texts, g.human, strict=True)
        }
        tiers: list[list[int]] = []
        for value in sorted(set(means.values())):
            tiers.append([ids.index(c) for c in ids if means[c] == value])
        merged.append(
            RankedSet(
                ranking_id=min(g.ranking_id for g in group),
                set_id=first.set_id,
                prompt_id=first.prompt_id,
                prompt=first.prompt,
                candidate_ids=ids,
                texts=[text_of[c][0] for c in ids],
                human=[text_of[c][1] for c in ids],
                tiers=tiers,
                all_bad=all_bad,
            )
        )
    return merged


def demonstrations(session: Session) -> list[tuple[str, str]]:
    """Imported demonstrations: (prompt, reply a person wrote for it)."""
    rows = session.execute(
        select(Prompt.text, Candidate.text)
        .join(Candidate, Candidate.prompt_id == Prompt.id)
        .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
        .where(
            ModelVersion.kind == ModelKind.external,
            ModelVersion.config["source"].as_string() == DEMONSTRATION_SOURCE,
            Candidate.hidden.is_(False),
        )
        .order_by(Candidate.id)
    ).all()
    return [(p, c) for p, c in rows]


def unlabelled_prompts(session: Session, limit: int, seed: int) -> list[str]:
    """Prompts nobody has ranked yet (for reward-model-labelled pairs), a seeded sample of at most `limit`."""
    if limit <= 0:
        return []
    ranked = (
        select(ComparisonSet.prompt_id)
        .join(Ranking, Ranking.set_id == ComparisonSet.id)
        .where(ComparisonSet.prompt_id == Prompt.id, Ranking.dropped.is_(False))
    )
    texts = session.scalars(
        select(Prompt.text)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .where(~exists(ranked), PromptSet.paused.is_(False))
        .order_by(Prompt.id)
    ).all()
    texts = list(dict.fromkeys(texts))
    random.Random(seed).shuffle(texts)
    return texts[:limit]


# --- model versions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRef:
    id: int
    name: str
    base_model: str
    adapter_path: str | None
    status: str


def _ref(v: ModelVersion | None) -> VersionRef | None:
    if v is None:
        return None
    return VersionRef(v.id, v.name, v.base_model, v.adapter_path, v.status.value)


def get_version(session: Session, version_id: int | None) -> VersionRef | None:
    return _ref(session.get(ModelVersion, version_id)) if version_id is not None else None


def active_policy(session: Session) -> VersionRef | None:
    """The policy annotators' new candidates come from (at most one is active)."""
    return _ref(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.kind == ModelKind.policy, ModelVersion.status == ModelStatus.active)
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
    )


def newest_policy(session: Session, base_model: str) -> VersionRef | None:
    """The newest trained policy on this base model that nobody retired: the next round builds on it."""
    return _ref(
        session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.kind == ModelKind.policy,
                ModelVersion.adapter_path.is_not(None),
                ModelVersion.base_model == base_model,
                ModelVersion.status.in_([ModelStatus.candidate, ModelStatus.active]),
            )
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
    )


def newest_reward(session: Session, base_model: str) -> VersionRef | None:
    return _ref(
        session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.kind == ModelKind.reward,
                ModelVersion.adapter_path.is_not(None),
                ModelVersion.base_model == base_model,
                ModelVersion.status != ModelStatus.failed,
            )
            .order_by(ModelVersion.id.desc())
            .limit(1)
        ).first()
    )


def base_policy(session: Session, base_model: str) -> VersionRef:
    """The untrained base model as a policy version (candidates need a version); active if none is."""
    name = f"base-{base_model}"[:200]
    row = session.scalars(select(ModelVersion).where(ModelVersion.name == name)).first()
    if row is None:
        session.execute(select(func.pg_advisory_xact_lock(PROMOTION_LOCK_KEY)))
        has_active = session.scalars(
            select(ModelVersion.id).where(
                ModelVersion.kind == ModelKind.policy, ModelVersion.status == ModelStatus.active
            )
        ).first()
        row = ModelVersion(
            name=name,
            kind=ModelKind.policy,
            base_model=base_model,
            adapter_path=None,
            status=ModelStatus.retired if has_active else ModelStatus.active,
            config={"source": "base model, untrained"},
            metrics={},
        )
        session.add(row)
        session.flush()
    ref = _ref(row)
    assert ref is not None
    return ref


def parent_id(session: Session, version_id: int) -> int | None:
    row = session.get(ModelVersion, version_id)
    return row.parent_id if row is not None else None


def version_names_of_round(session: Session, prefix: str) -> set[str]:
    return set(session.scalars(select(ModelVersion.name).where(ModelVersion.name.startswith(prefix))).all())


@dataclass(frozen=True)
class NewVersion:
    name: str
    kind: ModelKind
    base_model: str
    adapter_path: str
    parent_id: int | None
    config: dict[str, Any]
    metrics: dict[str, Any]


def publish(
    session: Session,
    round_id: int,
    snapshot_id: int,
    reward: NewVersion,
    policy: NewVersion,
    promote: bool,
) -> tuple[int, int]:
    """Insert both versions (files already complete), link them to the round, optionally promote; one txn."""
    rows = []
    for v in (reward, policy):
        row = ModelVersion(
            name=v.name,
            kind=v.kind,
            base_model=v.base_model,
            adapter_path=v.adapter_path,
            parent_id=v.parent_id,
            status=ModelStatus.candidate,
            config=v.config,
            metrics=v.metrics,
            data_snapshot_id=snapshot_id,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    reward_row, policy_row = rows
    if promote:
        promote_policy(session, policy_row.id)
    round_ = session.get(Round, round_id, with_for_update=True)
    assert round_ is not None
    round_.reward_version_id, round_.policy_version_id = reward_row.id, policy_row.id
    return reward_row.id, policy_row.id


def promote_policy(session: Session, version_id: int) -> None:
    """Auto-promotion: this policy becomes active, the previous active one is retired."""
    session.execute(select(func.pg_advisory_xact_lock(PROMOTION_LOCK_KEY)))
    for row in session.scalars(
        select(ModelVersion)
        .where(ModelVersion.kind == ModelKind.policy, ModelVersion.status == ModelStatus.active)
        .with_for_update()
    ).all():
        if row.id != version_id:
            row.status = ModelStatus.retired
    session.flush()
    promoted = session.get(ModelVersion, version_id)
    assert promoted is not None
    promoted.status = ModelStatus.active


# --- generation -----------------------------------------------------------------------------------------


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


def store_sets(
    session: Session, sets: Sequence[tuple[int, list[NewCandidate]]], overlap: int, source: str
) -> int:
    """Candidates plus one open comparison set per prompt; sets with fewer than two candidates are skipped."""
    made = 0
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
        made += 1
    session.flush()
    return made


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
