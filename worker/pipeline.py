"""One training round, stage by stage; read top to bottom.

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

Crash safety: a retried round reuses its snapshot; training restarts in a fresh scratch directory; once
the versions are published (rows committed) a retry goes straight to generation. Version directories left
by a crashed attempt (complete but without rows) are deleted before the retry publishes its own.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.orm import ModelKind
from worker import store
from worker.config import ConfigError, RoundConfig
from worker.progress import ProgressReporter
from worker.rounds import Claim, merge_metrics, set_device


@dataclass
class RoundContext:
    """What every stage needs: the round, its config, where to write, how to report."""

    claim: Claim
    cfg: RoundConfig
    settings: Settings
    sessions: sessionmaker[Session]
    progress: ProgressReporter
    scratch: Path  # this attempt's working directory; deleted when the round ends
    started: float

    @property
    def round_id(self) -> int:
        return self.claim.round_id

    @property
    def version_prefix(self) -> str:
        return f"round{self.round_id}-"

    @property
    def artifacts_dir(self) -> Path:
        return self.settings.resolved_artifacts_dir.resolve()

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def record(self, **metrics: Any) -> None:
        merge_metrics(self.sessions, self.round_id, metrics)


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
            return {"generated_sets": generated, **_timing(ctx)}

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
            **_timing(ctx),
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
            newest = store.newest_policy(session, ctx.cfg.base_model)
        generated = stage_generate(ctx, new_policy_id=newest.id if newest else None)
        return {"generated_sets": generated, **_timing(ctx)}
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)


def _context(
    claim: Claim, progress: ProgressReporter, sessions: sessionmaker[Session], settings: Settings
) -> RoundContext:
    # Checked again here: the code may have changed since the round was queued.
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


def _timing(ctx: RoundContext) -> dict[str, Any]:
    from worker.models import pick_device

    return {"wall_seconds": round(time.monotonic() - ctx.started, 1), "device": str(pick_device().device)}


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


# --- 1. snapshot ----------------------------------------------------------------------------------------


def stage_snapshot(ctx: RoundContext) -> store.Snapshot:
    """Freeze the rankings this round trains on (a retry reuses the same snapshot)."""
    ctx.progress.stage("snapshot")
    with ctx.sessions() as session, session.begin():
        snapshot = store.get_or_create_snapshot(session, ctx.round_id, ctx.cfg.max_rankings)
    ctx.progress.log(
        f"snapshot {snapshot.id}: {len(snapshot.ranking_ids)} rankings, sha256 {snapshot.sha256[:12]}"
    )
    ctx.record(data_snapshot_id=snapshot.id, rankings=len(snapshot.ranking_ids))
    return snapshot


@dataclass
class RoundData:
    data: store.TrainingData
    train_rankings: list[Any]
    heldout_prompts: list[str]


def load_data(ctx: RoundContext, snapshot: store.Snapshot) -> RoundData:
    """The snapshot's rankings as texts, split by prompt exactly as the reward model will split them."""
    from worker.data import split_by_prompt

    with ctx.sessions() as session:
        data = store.load_training_data(session, snapshot.ranking_ids, ctx.cfg.multi_annotator)
    if not any(r.pairs() for r in data.rankings):
        raise store.NoTrainingData(
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
        ref = store.newest_policy(session, ctx.cfg.base_model) or store.base_policy(
            session, ctx.cfg.base_model
        )
    adapter = Path(ref.adapter_path) if ref.adapter_path else None
    ctx.progress.log(f"building on policy {ref.name}")
    return Parent(ref.id, ref.name, adapter)


# --- optional SFT ---------------------------------------------------------------------------------------


def stage_sft(ctx: RoundContext, rd: RoundData, parent: Parent) -> Path | None:
    """LoRA SFT on demonstrations; returns the adapter DPO continues from (else the parent's)."""
    # The round's held-out prompts judge the reward model and the new policy (win-rate): a policy
    # fine-tuned on their first-ranked replies would be judged on answers it was shown.
    heldout = set(rd.heldout_prompts)
    demos = [(p, c) for p, c in rd.data.demonstrations if p not in heldout]
    withheld = len(rd.data.demonstrations) - len(demos)
    if ctx.cfg.sft == "off" or (ctx.cfg.sft == "auto" and not demos):
        return parent.adapter
    if not demos:
        raise ConfigError(
            "sft is 'on' but there are no demonstrations or first-ranked human replies"
            + (f" outside the round's held-out prompts ({withheld} withheld)" if withheld else "")
        )
    from worker.sft import Demonstration, SFTTrainConfig, train_sft

    ctx.progress.stage("sft")
    out = ctx.scratch / "sft"
    cfg = SFTTrainConfig(
        base_model=ctx.cfg.base_model,
        lr=ctx.cfg.sft_learning_rate,
        epochs=ctx.cfg.sft_epochs,
        batch_size=ctx.cfg.policy_batch_size,
        weight_decay=ctx.cfg.policy_weight_decay,
        lora_r=ctx.cfg.lora_r,
        lora_alpha=ctx.cfg.lora_alpha,
        lora_dropout=ctx.cfg.lora_dropout,
        lora_target_modules=ctx.cfg.lora_targets(),
        lora_top_layers=ctx.cfg.lora_top_layers,
        max_steps=ctx.cfg.policy_max_steps,
        max_length=ctx.cfg.max_length,
        seed=ctx.cfg.seed,
        heldout_fraction=ctx.cfg.policy_heldout_fraction,
        patience=ctx.cfg.policy_patience,
    )
    result = train_sft(
        cfg,
        [Demonstration(p, c) for p, c in demos],
        out,
        previous_adapter=parent.adapter,
        data_dir=ctx.data_dir,
        progress=ctx.progress.callback(),
    )
    metrics = _json_ready(result.metrics)
    metrics["withheld_heldout_prompt_demonstrations"] = withheld
    ctx.progress.log(
        f"SFT on {metrics['train_demonstrations']} demonstrations: held-out loss {metrics['heldout_loss']} "
        f"on {metrics['heldout_demonstrations']}"
    )
    ctx.record(sft=metrics)
    _free_memory()
    return out


# --- 2. reward model ------------------------------------------------------------------------------------


@dataclass
class RewardStage:
    dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    heldout_pairs: list[Any]
    parent_id: int | None


def stage_reward(ctx: RoundContext, rd: RoundData) -> RewardStage:
    """Train the reward model; report held-out accuracy, and the previous reward model's on the same pairs."""
    from worker.reward import RewardConfig, evaluate_reward_model, train_reward_model

    ctx.progress.stage("reward")
    cfg = RewardConfig(
        base_model=ctx.cfg.base_model,
        lr=ctx.cfg.reward_learning_rate,
        epochs=ctx.cfg.reward_epochs,
        batch_size=ctx.cfg.reward_batch_size,
        weight_decay=ctx.cfg.reward_weight_decay,
        lora_r=ctx.cfg.lora_r,
        lora_alpha=ctx.cfg.lora_alpha,
        lora_dropout=ctx.cfg.lora_dropout,
        lora_target_modules=ctx.cfg.lora_targets(),
        lora_top_layers=ctx.cfg.lora_top_layers,
        max_length=ctx.cfg.max_length,
        margin_scale=ctx.cfg.reward_margin_scale,
        seed=ctx.cfg.seed,
        heldout_fraction=ctx.cfg.heldout_fraction,
        patience=ctx.cfg.reward_patience,
    )
    out = ctx.scratch / "reward"
    result = train_reward_model(
        cfg, rd.data.rankings, out, data_dir=ctx.data_dir, progress=ctx.progress.callback()
    )
    metrics = dict(result.metrics)
    with ctx.sessions() as session:
        previous = store.newest_reward(session, ctx.cfg.base_model)
    if previous is not None and previous.adapter_path and result.heldout_pairs:
        ctx.progress.log(f"scoring the previous reward model {previous.name} on the same held-out pairs")
        before = evaluate_reward_model(
            Path(previous.adapter_path), result.heldout_pairs, data_dir=ctx.data_dir
        )
        metrics["previous_version_id"] = previous.id
        metrics["previous_heldout_accuracy"] = _num(before.accuracy)
        metrics["previous_heldout_loss"] = _num(before.loss)
    metrics = _json_ready(metrics)
    ctx.progress.log(
        f"reward model: held-out accuracy {metrics.get('heldout_accuracy')} on "
        f"{metrics.get('heldout_pairs')} pairs (previous: {metrics.get('previous_heldout_accuracy', 'none')})"
    )
    ctx.record(reward=metrics)
    _free_memory()
    return RewardStage(
        out, cfg.to_dict(), metrics, list(result.heldout_pairs), previous.id if previous else None
    )


def _json_ready(metrics: dict[str, Any]) -> dict[str, Any]:
    """A trainer's metrics with NaN scores as null, ready for a JSON column."""
    return {k: _num(v) if isinstance(v, float) else v for k, v in metrics.items()}


def _num(value: float | None) -> float | None:
    """JSON has no NaN: an undefined score is null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


# --- 3. policy ------------------------------------------------------------------------------------------


@dataclass
class PolicyStage:
    dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]


def stage_policy(
    ctx: RoundContext, rd: RoundData, reward: RewardStage, start_adapter: Path | None
) -> PolicyStage:
    """LoRA DPO from the previous policy on human pairs plus reward-model-labelled pairs (or RLOO)."""
    if ctx.cfg.policy_method == "rloo":
        return stage_policy_rloo(ctx, rd, reward, start_adapter)
    from worker.data import ranking_to_pairs
    from worker.policy_dpo import DPOTrainConfig, train_dpo

    human_pairs = ranking_to_pairs(rd.train_rankings)
    synthetic = synthetic_pairs(ctx, reward, start_adapter)
    pairs = human_pairs + synthetic
    ctx.progress.log(f"DPO on {len(human_pairs)} human + {len(synthetic)} reward-labelled pairs")
    ctx.progress.stage("policy")
    cfg = DPOTrainConfig(
        base_model=ctx.cfg.base_model,
        beta=ctx.cfg.dpo_beta,
        lr=ctx.cfg.policy_learning_rate,
        epochs=ctx.cfg.policy_epochs,
        batch_size=ctx.cfg.policy_batch_size,
        weight_decay=ctx.cfg.policy_weight_decay,
        lora_r=ctx.cfg.lora_r,
        lora_alpha=ctx.cfg.lora_alpha,
        lora_dropout=ctx.cfg.lora_dropout,
        lora_target_modules=ctx.cfg.lora_targets(),
        lora_top_layers=ctx.cfg.lora_top_layers,
        max_steps=ctx.cfg.policy_max_steps,
        max_length=ctx.cfg.max_length,
        max_prompt_length=ctx.cfg.max_prompt_length,
        seed=ctx.cfg.seed,
        heldout_fraction=ctx.cfg.policy_heldout_fraction,
        patience=ctx.cfg.policy_patience,
    )
    out = ctx.scratch / "policy"
    result = train_dpo(
        cfg,
        pairs,
        out,
        previous_adapter=start_adapter,
        data_dir=ctx.data_dir,
        progress=ctx.progress.callback(),
    )
    metrics = _json_ready(result.metrics)
    metrics.update(human_pairs=len(human_pairs), synthetic_pairs=len(synthetic))
    ctx.record(policy=metrics)
    _free_memory()
    return PolicyStage(out, cfg.to_dict(), metrics)


def stage_policy_rloo(
    ctx: RoundContext, rd: RoundData, reward: RewardStage, start_adapter: Path | None
) -> PolicyStage:
    """Online RLOO on the training prompts and unranked ones, rewarded by the new reward model."""
    from worker.policy_rloo import RLOOTrainConfig, train_rloo
    from worker.reward import load_reward_model

    with ctx.sessions() as session:
        unranked = store.unlabelled_prompts(session, ctx.cfg.synthetic_prompts, ctx.cfg.seed)
    prompts = list(dict.fromkeys([r.prompt for r in rd.train_rankings] + unranked))
    ctx.progress.stage("policy")
    ctx.progress.log(f"RLOO on {len(prompts)} prompts, {ctx.cfg.rloo_generations} samples each")
    cfg = RLOOTrainConfig(
        base_model=ctx.cfg.base_model,
        lr=ctx.cfg.policy_learning_rate,
        epochs=ctx.cfg.policy_epochs,
        prompts_per_step=max(1, ctx.cfg.policy_batch_size // ctx.cfg.rloo_generations),
        num_generations=ctx.cfg.rloo_generations,
        beta=ctx.cfg.rloo_beta,
        weight_decay=ctx.cfg.policy_weight_decay,
        max_prompt_length=ctx.cfg.max_prompt_length,
        max_completion_length=ctx.cfg.max_new_tokens,
        temperature=ctx.cfg.temperature or 1.0,
        top_p=ctx.cfg.top_p,
        lora_r=ctx.cfg.lora_r,
        lora_alpha=ctx.cfg.lora_alpha,
        lora_dropout=ctx.cfg.lora_dropout,
        lora_target_modules=ctx.cfg.lora_targets(),
        seed=ctx.cfg.seed,
        heldout_fraction=ctx.cfg.policy_heldout_fraction,
        patience=ctx.cfg.policy_patience,
    )
    rm = load_reward_model(reward.dir, data_dir=ctx.data_dir)
    out = ctx.scratch / "policy"
    result = train_rloo(
        cfg,
        prompts,
        rm,
        out,
        previous_adapter=start_adapter,
        data_dir=ctx.data_dir,
        progress=ctx.progress.callback(),
    )
    metrics = _json_ready(result.metrics)
    ctx.record(policy=metrics)
    del rm
    _free_memory()
    return PolicyStage(out, cfg.to_dict(), metrics)


def synthetic_pairs(ctx: RoundContext, reward: RewardStage, start_adapter: Path | None) -> list[Any]:
    """Best vs worst (by the new reward model) of N fresh samples, for prompts nobody ranked yet."""
    if ctx.cfg.synthetic_prompts <= 0:
        return []
    with ctx.sessions() as session:
        prompts = store.unlabelled_prompts(session, ctx.cfg.synthetic_prompts, ctx.cfg.seed)
    if not prompts:
        return []
    from worker.models import load_causal_lm
    from worker.policy_dpo import reward_labelled_pairs
    from worker.reward import load_reward_model

    ctx.progress.stage("policy_samples", total=len(prompts))
    ctx.progress.log(f"sampling {ctx.cfg.synthetic_samples} replies for {len(prompts)} unranked prompts")
    policy, tokenizer = load_causal_lm(ctx.cfg.base_model, data_dir=ctx.data_dir, adapter_dir=start_adapter)
    rm = load_reward_model(reward.dir, data_dir=ctx.data_dir)
    cand_cfg = _candidate_config(ctx, ctx.cfg.synthetic_samples, ctx.cfg.seed + 1)
    pairs: list[Any] = []
    step = max(1, ctx.cfg.generation_batch_size // ctx.cfg.synthetic_samples)
    for start in range(0, len(prompts), step):
        chunk = prompts[start : start + step]
        pairs += reward_labelled_pairs(
            policy, tokenizer, rm, chunk, dataclasses.replace(cand_cfg, seed=cand_cfg.seed + start)
        )
        ctx.progress.update(min(start + step, len(prompts)), len(prompts))
    del policy, rm
    _free_memory()
    return pairs


def _candidate_config(ctx: RoundContext, k: int, seed: int) -> Any:
    from worker.generation import CandidateConfig, SamplingParams

    return CandidateConfig(
        k=k,
        sampling=SamplingParams(
            temperature=ctx.cfg.temperature, top_p=ctx.cfg.top_p, max_new_tokens=ctx.cfg.max_new_tokens
        ),
        batch_size=ctx.cfg.generation_batch_size,
        seed=seed,
        max_prompt_tokens=ctx.cfg.max_prompt_length,
        dedupe_threshold=ctx.cfg.dedupe_threshold,
    )


# --- 4. evaluation --------------------------------------------------------------------------------------


def stage_evaluate(
    ctx: RoundContext, rd: RoundData, reward: RewardStage, policy: PolicyStage, parent: Parent
) -> dict[str, Any]:
    """Win-rate of the new policy over the previous one on held-out prompts, judged by the new reward model.

    Both policies answer each prompt with the same seed; a tie counts half.
    """
    prompts = rd.heldout_prompts[: ctx.cfg.eval_prompts]
    if not prompts:
        ctx.progress.log("no held-out prompts: win-rate not measured")
        return {"winrate_vs_parent": None, "eval_prompts": 0, "eval_parent_version_id": parent.version_id}
    from worker.generation import generate_candidates
    from worker.models import load_causal_lm
    from worker.reward import load_reward_model

    ctx.progress.stage("evaluate", total=2 * len(prompts))
    cand_cfg = dataclasses.replace(
        _candidate_config(ctx, 1, ctx.cfg.seed + 2), refill_rounds=0, drop_empty=False
    )
    replies: dict[str, list[str]] = {}
    for label, adapter in (("new", policy.dir), ("parent", parent.adapter)):
        model, tokenizer = load_causal_lm(ctx.cfg.base_model, data_dir=ctx.data_dir, adapter_dir=adapter)
        out = generate_candidates(model, tokenizer, prompts, cand_cfg)
        replies[label] = [c[0].text if c else "" for c in out.candidates]
        del model
        _free_memory()
        ctx.progress.update(len(prompts) * (1 if label == "new" else 2), 2 * len(prompts))
    rm = load_reward_model(reward.dir, data_dir=ctx.data_dir)
    new_scores = rm.score_exchanges(list(zip(prompts, replies["new"], strict=True)))
    old_scores = rm.score_exchanges(list(zip(prompts, replies["parent"], strict=True)))
    wins = sum(1.0 if n > o else 0.5 if n == o else 0.0 for n, o in zip(new_scores, old_scores, strict=True))
    result = {
        "winrate_vs_parent": round(wins / len(prompts), 4),
        "eval_prompts": len(prompts),
        "eval_parent_version_id": parent.version_id,
        "eval_reward_new_mean": round(sum(new_scores) / len(prompts), 4),
        "eval_reward_parent_mean": round(sum(old_scores) / len(prompts), 4),
    }
    ctx.progress.log(f"win-rate vs {parent.name}: {result['winrate_vs_parent']} on {len(prompts)} prompts")
    ctx.record(evaluation=result)
    del rm
    _free_memory()
    return result


# --- 5. publish -----------------------------------------------------------------------------------------


def stage_publish(
    ctx: RoundContext,
    snapshot: store.Snapshot,
    reward: RewardStage,
    policy: PolicyStage,
    evaluation: dict[str, Any],
    parent: Parent,
) -> tuple[int, int]:
    """Immutable version directories first, then both rows in one transaction (optionally promoted)."""
    from worker.artifacts import version_path, write_version

    ctx.progress.stage("publish")
    name = f"round{ctx.round_id}-a{ctx.claim.attempt}"
    remove_orphans(ctx)
    timing = _timing(ctx)
    round_info = {"round_id": ctx.round_id, "round_config": ctx.cfg.as_dict()}
    reward_metrics = {**reward.metrics, **timing}
    policy_metrics = {**policy.metrics, **evaluation, **timing}
    reward_dir = write_version(
        ctx.artifacts_dir,
        "reward",
        name,
        source_dir=reward.dir,
        config={**reward.config, **round_info},
        metrics=reward_metrics,
        data_snapshot_id=snapshot.id,
        parent_id=reward.parent_id,
        base_model=ctx.cfg.base_model,
    )
    policy_dir = write_version(
        ctx.artifacts_dir,
        "policy",
        name,
        source_dir=policy.dir,
        config={**policy.config, **round_info},
        metrics=policy_metrics,
        data_snapshot_id=snapshot.id,
        parent_id=parent.version_id,
        base_model=ctx.cfg.base_model,
    )
    assert reward_dir == version_path(ctx.artifacts_dir, "reward", name)
    promote = ctx.cfg.promote(ctx.settings)
    with ctx.sessions() as session, session.begin():
        reward_id, policy_id = store.publish(
            session,
            ctx.round_id,
            snapshot.id,
            store.NewVersion(
                reward_dir.name,
                ModelKind.reward,
                ctx.cfg.base_model,
                str(reward_dir),
                reward.parent_id,
                {**reward.config, **round_info},
                reward_metrics,
            ),
            store.NewVersion(
                policy_dir.name,
                ModelKind.policy,
                ctx.cfg.base_model,
                str(policy_dir),
                parent.version_id,
                {**policy.config, **round_info},
                policy_metrics,
            ),
            promote,
        )
    ctx.progress.log(
        f"published {reward_dir.name} (#{reward_id}) and {policy_dir.name} (#{policy_id})"
        + (", promoted to active" if promote else ", awaiting promotion")
    )
    return reward_id, policy_id


def remove_orphans(ctx: RoundContext) -> list[Path]:
    """Delete this round's version directories that an earlier, crashed attempt left without rows."""
    removed = []
    for kind in ("reward", "policy"):
        prefix = f"{kind}-round{ctx.round_id}-a"
        with ctx.sessions() as session:
            known = store.version_names_of_round(session, prefix)
        for path in ctx.artifacts_dir.glob(f"{prefix}*"):
            if path.is_dir() and path.name not in known:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    if removed:
        ctx.progress.log(f"removed {len(removed)} unpublished directories of an earlier attempt")
    return removed


# --- 6. generate ----------------------------------------------------------------------------------------


def stage_generate(ctx: RoundContext, new_policy_id: int | None) -> int:
    """K candidates per prompt needing work, new and active policy mixed in each set; returns sets made."""
    from worker.generation import generate_candidates, is_near_duplicate
    from worker.models import load_causal_lm

    cfg = ctx.cfg
    with ctx.sessions() as session, session.begin():
        prompts = store.prompts_needing_work(session, cfg.generate_prompts)
        newest = store.get_version(session, new_policy_id)
        # Without any active policy the base model serves (and becomes the active version).
        compare_with = store.active_policy(session) or store.base_policy(session, cfg.base_model)
        if newest is not None and compare_with.id == newest.id:
            # The new policy is already active (auto-promoted): compare it with the one it replaced.
            compare_with = store.get_version(session, store.parent_id(session, newest.id)) or compare_with
    if not prompts:
        ctx.progress.log("no prompts need new candidates")
        return 0
    plan = _mix(cfg.k, cfg.new_policy_share, newest, compare_with)
    ctx.progress.stage("generate", total=len(prompts) * cfg.k)
    ctx.progress.log(
        "generating for {} prompts: {}".format(len(prompts), ", ".join(f"{k} from {v.name}" for v, k in plan))
    )
    per_prompt: list[list[tuple[store.VersionRef, Any]]] = [[] for _ in prompts]
    done = 0
    for offset, (version, k) in enumerate(plan):
        model, tokenizer = load_causal_lm(
            version.base_model or cfg.base_model,
            data_dir=ctx.data_dir,
            adapter_dir=Path(version.adapter_path) if version.adapter_path else None,
        )
        seed = random.Random(cfg.seed * 1000 + ctx.round_id * 10 + offset + ctx.claim.attempt).randrange(
            2**31
        )
        cand_cfg = dataclasses.replace(_candidate_config(ctx, k, seed))
        step = max(1, cfg.generation_batch_size // k)
        for start in range(0, len(prompts), step):
            chunk = prompts[start : start + step]
            result = generate_candidates(
                model, tokenizer, [p.text for p in chunk], dataclasses.replace(cand_cfg, seed=seed + start)
            )
            for i, cands in enumerate(result.candidates):
                per_prompt[start + i].extend((version, c) for c in cands)
            done += len(chunk) * k
            ctx.progress.update(done, len(prompts) * cfg.k)
        del model
        _free_memory()

    sets: list[tuple[int, list[store.NewCandidate]]] = []
    dropped = 0
    for prompt, generated in zip(prompts, per_prompt, strict=True):
        kept: list[store.NewCandidate] = []
        for version, cand in generated:
            if any(is_near_duplicate(cand.text, other.text, cfg.dedupe_threshold) for other in kept):
                dropped += 1
                continue
            kept.append(
                store.NewCandidate(
                    model_version_id=version.id,
                    text=cand.text,
                    seed=cand.seed,
                    params={
                        **dataclasses.asdict(cand.params),
                        "finish_reason": cand.finish_reason,
                        "prompt_tokens": cand.prompt_tokens,
                        "completion_tokens": cand.completion_tokens,
                        "round_id": ctx.round_id,
                        "model_version": version.name,
                    },
                )
            )
        random.Random(cfg.seed + prompt.id).shuffle(kept)
        sets.append((prompt.id, kept))
    with ctx.sessions() as session, session.begin():
        made = store.store_sets(session, sets, ctx.settings.overlap, f"round:{ctx.round_id}")
    ctx.progress.log(f"{made} new comparison sets; {dropped} near-duplicate candidates dropped")
    ctx.record(generation={"sets": made, "prompts": len(prompts), "near_duplicates_dropped": dropped})
    return made


def _mix(
    k: int, share: float, newest: store.VersionRef | None, other: store.VersionRef
) -> list[tuple[store.VersionRef, int]]:
    """How many of each set's K candidates each version writes."""
    if newest is None or newest.id == other.id:
        return [(other, k)]
    k_new = min(k, max(0, round(k * share)))
    plan = [(newest, k_new), (other, k - k_new)]
    return [(v, n) for v, n in plan if n > 0]
