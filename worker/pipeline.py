"""One training round, stage by stage: the order lives here, each stage in worker/stages/.

    snapshot -> (sft) -> reward -> policy -> evaluate -> publish -> generate
    (with parallel_stages=on the reward model trains in a child process beside SFT and the policy where
    they do not need it)

- snapshot: freeze exactly which rankings the round uses (a DataSnapshot: ranking ids + sha256). When
  several annotators ranked one set, `multi_annotator=each` trains on every ranking (disagreements pull
  against each other in the loss, agreement adds weight); `consensus` merges them into one ranking by
  mean tier.
- sft (optional): LoRA SFT on demonstrations and first-ranked human-written replies.
- reward: LoRA + scalar head, InstructGPT K-wise loss, whole prompts held out; the previous reward model
  is scored on the same held-out pairs.
- policy: LoRA DPO on the human pairs of the training prompts plus reward-model-labelled pairs (best vs
  worst of N fresh samples) for prompts nobody ranked yet; the reference is the previous round's policy.
  The reward model needs neither SFT nor a policy without such pairs: with `parallel_stages=on` it trains
  in a child process beside them, each process on its share of the cores.
- evaluate: win-rate of the new policy against the previous one on held-out prompts, judged by the new
  reward model; stored with the version, with the round's wall time and device.
- publish: files first, complete and hashed, to the model store (worker/store.py: the data directory or a
  URL every host reaches), then both version rows in one transaction, which hands generation over.
- generate: its own job on the generate queue, so a worker on another host can take it (a GPU host trains,
  others generate): K candidates for prompts that need work, from the new policy and the active one in
  the same comparison set, so annotators' rankings later measure one against the other. It finishes the
  round.

Layout (the worker: queue -> stages -> versions -> candidates): worker/tasks.py takes the job off the
queue (app/training/queue.py) and calls this module; worker/stages/prepare.py (snapshot, split, parent),
train.py (sft, reward, policy), publish.py (evaluate, publish), generate.py; each trainer's config is built
from the round config in worker/stages/configs.py, parsed once per round in `_context`. Database reads and
writes: worker/snapshot.py (snapshot, training data), worker/versions.py (model versions, publication),
worker/candidates.py (new comparison sets); round and version rules shared with the web app (start,
promote) are app/training/rounds.py.

Crash safety: a retried round reuses its snapshot; training restarts in a fresh scratch directory; once
the versions are published (rows committed) the round belongs to its generation job, and a retry of that
job generates again. Versions left in the store by a crashed attempt (complete or not, but without rows)
are deleted before the retry publishes its own.
"""

from __future__ import annotations

import os
import shutil
import socket
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
from worker.stages.train import stage_training


def run_training_round(
    claim: Claim, progress: ProgressReporter, sessions: sessionmaker[Session], settings: Settings
) -> dict[str, Any] | None:
    """Train and publish (the train queue's job), or generate once published (the generate queue's).

    Returns the round's last metrics when the round is done, None when it was handed to its generation job.
    """
    if claim.policy_version_id is not None:
        # The versions are published: this is the generation job (or its retry), perhaps on another host.
        ctx = _context(claim, progress, sessions, settings, part="generate")
        try:
            generated = stage_generate(ctx, new_policy_id=claim.policy_version_id)
            spent = timing(ctx)
            return {
                "generated_sets": generated,
                "generation_wall_seconds": spent["wall_seconds"],
                "generation_device": spent["device"],
            }
        finally:
            shutil.rmtree(ctx.scratch, ignore_errors=True)

    ctx = _context(claim, progress, sessions, settings)
    try:
        snapshot = stage_snapshot(ctx)
        data = load_data(ctx, snapshot)
        parent = previous_policy(ctx)
        reward, policy = stage_training(ctx, data, parent)
        evaluation = stage_evaluate(ctx, data, reward, policy, parent)
        stage_publish(ctx, snapshot, reward, policy, evaluation, parent)
        return None
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
    claim: Claim,
    progress: ProgressReporter,
    sessions: sessionmaker[Session],
    settings: Settings,
    part: str = "",
) -> RoundContext:
    # Parsed once per round, here, and checked again: the code may have changed since it was queued.
    cfg = RoundConfig.from_stored(claim.config, settings)
    _check_device(cfg)
    from worker.models import pick_device

    device = str(pick_device().device)
    where = f"{device} ({socket.gethostname()}, pid {os.getpid()})"
    if part:
        progress.log(f"generation of the published versions: attempt {claim.attempt} on {where}")
    else:
        # The round's device is where it trains; its generation may run elsewhere.
        set_device(sessions, claim.round_id, device)
        progress.log(f"attempt {claim.attempt} on {where}")
    # Its own folder per part: the training job may still be cleaning up when the generation job starts.
    folder = f"round{claim.round_id}-a{claim.attempt}" + (f"-{part}" if part else "")
    scratch = settings.data_dir.resolve() / "work" / folder
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return RoundContext(claim, cfg, settings, sessions, progress, scratch, time.monotonic())


def _check_device(cfg: RoundConfig) -> None:
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device is 'cuda' but no CUDA device is available to this worker")
    if cfg.device == "cpu":
        # pick_device() and the Trainers read this: no GPU is visible to this process.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
