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


def annotator_weights(ctx: RoundContext) -> dict[int, float]:
    """The annotators' weights under the round's `annotator_weight`, stored in the round's metrics
    (`annotator_weights`: mode and annotator id -> weight) the first time, read back from them on a retry,
    so every attempt trains with the weights the round first froze."""
    from app.orm import Round
    from app.quality.gold import annotator_weights as compute

    mode = ctx.cfg.annotator_weight
    with ctx.sessions() as session:
        round_ = session.get(Round, ctx.round_id)
        stored = (round_.metrics or {}).get("annotator_weights") if round_ is not None else None
        if stored and stored.get("mode") == mode:
            return {int(a): float(w) for a, w in stored.get("weights", {}).items()}
        weights = compute(session, ctx.project_id, mode)
    ctx.record(annotator_weights={"mode": mode, "weights": {str(a): w for a, w in sorted(weights.items())}})
    if weights:
        low = sorted(weights.items(), key=lambda kv: kv[1])[:3]
        ctx.progress.log(f"annotator weights ({mode}): lowest " + ", ".join(f"#{a} {w:.2f}" for a, w in low))
    return weights


@dataclass
class RoundData:
    data: TrainingData
    train_rankings: list[Any]
    heldout_prompts: list[PromptLike]


def load_data(ctx: RoundContext, snapshot: Snapshot) -> RoundData:
    """The snapshot's rankings as texts, split by prompt exactly as the reward model will split them."""
    from worker.data import split_by_prompt

    weights = annotator_weights(ctx)
    with ctx.sessions() as session:
        data = snapshot_db.load_training_data(session, snapshot.ranking_ids, ctx.cfg.multi_annotator, weights)
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
