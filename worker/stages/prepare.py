"""Stage 1, and what the later stages read: the frozen snapshot, its texts split by prompt, the parent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.conversation import PromptLike
from worker import snapshot as snapshot_db
from worker import versions
from worker.snapshot import NoTrainingData, Snapshot, TrainingData
from worker.stages.context import RoundContext


def stage_snapshot(ctx: RoundContext) -> Snapshot:
    """Freeze the rankings this round trains on (a retry reuses the same snapshot)."""
    ctx.progress.stage("snapshot")
    with ctx.sessions() as session, session.begin():
        snapshot = snapshot_db.get_or_create_snapshot(session, ctx.round_id, ctx.cfg.max_rankings)
    ctx.progress.log(
        f"snapshot {snapshot.id}: {len(snapshot.ranking_ids)} rankings, sha256 {snapshot.sha256[:12]}"
    )
    ctx.record(data_snapshot_id=snapshot.id, rankings=len(snapshot.ranking_ids))
    return snapshot


@dataclass
class RoundData:
    data: TrainingData
    train_rankings: list[Any]
    heldout_prompts: list[PromptLike]


def load_data(ctx: RoundContext, snapshot: Snapshot) -> RoundData:
    """The snapshot's rankings as texts, split by prompt exactly as the reward model will split them."""
    from worker.data import split_by_prompt

    with ctx.sessions() as session:
        data = snapshot_db.load_training_data(session, snapshot.ranking_ids, ctx.cfg.multi_annotator)
    if not any(r.pairs() for r in data.rankings):
        raise NoTrainingData(
            "the snapshot's rankings give no preference pairs (all ties or all-bad); rank more sets first"
        )
    split = split_by_prompt(data.rankings, ctx.cfg.heldout_fraction, ctx.cfg.seed)
    ctx.progress.log(
        f"{len(data.rankings)} rankings over {len({r.prompt for r in data.rankings})} prompts; "
        f"{len(split.heldout_prompts)} prompts held out"
    )
    return RoundData(data, split.train, split.heldout_prompts)


@dataclass(frozen=True)
class Parent:
    """The policy this round builds on: the previous round's policy, or the untrained base model."""

    version_id: int
    name: str
    adapter: Path | None


def previous_policy(ctx: RoundContext) -> Parent:
    with ctx.sessions() as session, session.begin():
        ref = versions.newest_policy(session, ctx.cfg.base_model, ctx.project_id) or versions.base_policy(
            session, ctx.cfg.base_model, ctx.project_id
        )
    adapter = ctx.store.open(ref.adapter_path) if ref.adapter_path else None
    ctx.progress.log(f"building on policy {ref.name}")
    return Parent(ref.id, ref.name, adapter)
