"""One training round, stage by stage: the order lives here, each stage in worker/stages/.

    snapshot -> (sft) -> reward -> policy -> evaluate -> publish -> generate

- snapshot: freeze exactly which rankings the round uses (a DataSnapshot: ranking ids + sha256). When
  several annotators ranked one set, `multi_annotator=each` trains on every ranking (disagreements pull
  against each other in the loss, agreement adds weight); `consensus` merges them into one ranking by
  mean tier.
- sft (optional): LoRA SFT on demonstrations and first-ranked human-written replies.
- reward: LoRA + scalar head, InstructGPT K-wise loss, whole prompts held out; the previous reward model
  is scored on the same held-out pairs.
- policy: LoRA DPO on the human pairs of the training prompts plus reward-model-labelled pairs (best vs
  worst of N fresh samples) for prompts nobody ranked yet; the reference is the previous round's policy.
- evaluate: win-rate of the new policy against the previous one on held-out prompts, judged by the new
  reward model; stored with the version, with the round's wall time and device.
- publish: files first (atomic, immutable directories), then both version rows in one transaction.
- generate: K candidates for prompts that need work, from the new policy and the active one in the same
  comparison set, so annotators' rankings later measure one against the other.

Layout (the worker: queue -> stages -> versions -> candidates): worker/tasks.py takes the job off the
queue (app/training/queue.py) and calls this module; worker/stages/prepare.py (snapshot, split, parent),
train.py (sft, reward, policy), publish.py (evaluate, publish), generate.py; each trainer's config is built
from the round config in worker/stages/configs.py, parsed once per round in `_context`. Database reads and
writes: worker/snapshot.py (snapshot, training data), worker/versions.py (model versions, publication),
worker/candidates.py (new comparison sets); round and version rules shared with the web app (start,
promote) are app/training/rounds.py.

Crash safety: a retried round reuses its snapshot; training restarts in a fresh scratch directory; once
the versions are published (rows committed) a retry goes straight to generation. Version directories left
by a crashed attempt (complete but without rows) are deleted before the retry publishes its own.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.training.config import ConfigError, RoundConfig
from worker import versions
from worker.progress import ProgressReporter
from worker.rounds import Claim, set_device
from worker.stages.context import RoundContext, timing
from worker.stages.generate import stage_generate
from worker.stages.prepare import load_data, previous_policy, stage_snapshot
from worker.stages.publish import stage_evaluate, stage_publish
from worker.stages.train import stage_policy, stage_reward, stage_sft


def run_training_round(
    claim: Claim, progress: ProgressReporter, sessions: sessionmaker[Session], settings: Settings
) -> dict[str, Any]:
    """Run (or resume) a training round; returns the round's metrics."""
    ctx = _context(claim, progress, sessions, settings)
    try:
        if claim.policy_version_id is not None:
            # An earlier attempt published its versions and died while generating: only generation is left.
            progress.log("versions already published by an earlier attempt; resuming at generation")
            generated = stage_generate(ctx, new_policy_id=claim.policy_version_id)
            return {"generated_sets": generated, **timing(ctx)}

        snapshot = stage_snapshot(ctx)
        data = load_data(ctx, snapshot)
        parent = previous_policy(ctx)
        start_adapter = stage_sft(ctx, data, parent)
        reward = stage_reward(ctx, data)
        policy = stage_policy(ctx, data, reward, start_adapter)
        evaluation = stage_evaluate(ctx, data, reward, policy, parent)
        reward_id, policy_id = stage_publish(ctx, snapshot, reward, policy, evaluation, parent)
        generated = stage_generate(ctx, new_policy_id=policy_id)
        return {
            "data_snapshot_id": snapshot.id,
            "rankings": len(snapshot.ranking_ids),
            "reward_version_id": reward_id,
            "policy_version_id": policy_id,
            "generated_sets": generated,
            **evaluation,
            **timing(ctx),
        }
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)


def run_generation_round(
    claim: Claim, progress: ProgressReporter, sessions: sessionmaker[Session], settings: Settings
) -> dict[str, Any]:
    """Generation only: new comparison sets from the newest and the active policy, no training."""
    ctx = _context(claim, progress, sessions, settings)
    try:
        with sessions() as session:
            newest = versions.newest_policy(session, ctx.cfg.base_model, ctx.project_id)
        generated = stage_generate(ctx, new_policy_id=newest.id if newest else None)
        return {"generated_sets": generated, **timing(ctx)}
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)


def _context(
    claim: Claim, progress: ProgressReporter, sessions: sessionmaker[Session], settings: Settings
) -> RoundContext:
    # Parsed once per round, here, and checked again: the code may have changed since it was queued.
    cfg = RoundConfig.from_stored(claim.config, settings)
    _check_device(cfg)
    from worker.models import pick_device

    device = str(pick_device().device)
    set_device(sessions, claim.round_id, device)
    progress.log(f"attempt {claim.attempt} on {device}")
    scratch = settings.data_dir.resolve() / "work" / f"round{claim.round_id}-a{claim.attempt}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return RoundContext(claim, cfg, settings, sessions, progress, scratch, time.monotonic())


def _check_device(cfg: RoundConfig) -> None:
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device is 'cuda' but no CUDA device is available to this worker")
    if cfg.device == "cpu":
        import os

        # pick_device() and the Trainers read this: no GPU is visible to this process.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
