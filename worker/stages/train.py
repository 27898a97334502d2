"""Stages 2-3, the training: optional SFT, the reward model, the policy (DPO, ranking DPO, RLOO or GRPO).

Each stage builds its trainer's config from the round's (worker/stages/configs.py), trains into the
attempt's scratch directory and records its metrics on the round at once. SFT, the reward model and DPO
run data-parallel on `settings.gpus` processes (worker/launch.py); ranking DPO, RLOO, GRPO and sampling stay
in this process. `stage_training` runs the three, the reward model in a child process beside the others
where they do not need it (`parallel_stages`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.training.config import ConfigError
from worker import launch, versions
from worker import snapshot as snapshot_db
from worker.stages import configs
from worker.stages.context import RoundContext, free_memory, json_ready, num, parallel_threads, torch_threads
from worker.stages.prepare import Parent, RoundData


def _sft_demonstrations(rd: RoundData) -> list[tuple[Any, str]]:
    # The round's held-out prompts judge the reward model and the new policy (win-rate): a policy
    # fine-tuned on their first-ranked replies would be judged on answers it was shown.
    heldout = set(rd.heldout_prompts)
    return [(p, c) for p, c in rd.data.demonstrations if p not in heldout]


def _sft_runs(ctx: RoundContext, rd: RoundData) -> bool:
    return ctx.cfg.sft == "on" or (ctx.cfg.sft == "auto" and bool(_sft_demonstrations(rd)))


def stage_sft(ctx: RoundContext, rd: RoundData, parent: Parent) -> Path | None:
    """LoRA SFT on demonstrations; returns the adapter DPO continues from (else the parent's)."""
    demos = _sft_demonstrations(rd)
    withheld = len(rd.data.demonstrations) - len(demos)
    if not _sft_runs(ctx, rd):
        return parent.adapter
    if not demos:
        raise ConfigError(
            "sft is 'on' but there are no demonstrations or first-ranked human replies"
            + (f" outside the round's held-out prompts ({withheld} withheld)" if withheld else "")
        )
    from worker.sft import Demonstration

    ctx.progress.stage("sft")
    out = ctx.scratch / "sft"
    cfg = configs.sft_config(ctx.cfg)
    result = launch.run_stage(
        "sft",
        cfg,
        [Demonstration(p, c) for p, c in demos],
        out,
        previous_adapter=parent.adapter,
        data_dir=ctx.data_dir,
        **_launch_options(ctx),
    )
    metrics = json_ready(result.metrics)
    metrics["withheld_heldout_prompt_demonstrations"] = withheld
    ctx.progress.log(
        f"SFT on {metrics['train_demonstrations']} demonstrations: held-out loss {metrics['heldout_loss']} "
        f"on {metrics['heldout_demonstrations']}"
    )
    ctx.record(sft=metrics)
    free_memory()
    return out


def _launch_options(ctx: RoundContext) -> dict[str, Any]:
    """How a training stage runs: on `RANKLOOP_GPUS` data-parallel processes (`rankloop worker --gpus N`),
    reporting to the round, stopping when the round is cancelled (worker/launch.py)."""
    return {"processes": ctx.settings.gpus, "progress": ctx.progress.callback(), "check": ctx.progress.check}


@dataclass
class RewardStage:
    dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    heldout_pairs: list[Any]
    parent_id: int | None


def stage_reward(ctx: RoundContext, rd: RoundData) -> RewardStage:
    """Train the reward model; report held-out accuracy, and the previous reward model's on the same pairs."""
    ctx.progress.stage("reward")
    cfg = configs.reward_config(ctx.cfg)
    out = ctx.scratch / "reward"
    result = launch.run_stage(
        "reward", cfg, rd.data.rankings, out, data_dir=ctx.data_dir, **_launch_options(ctx)
    )
    return _reward_stage(ctx, cfg, out, result)


def stage_training(ctx: RoundContext, rd: RoundData, parent: Parent) -> tuple[RewardStage, PolicyStage]:
    """SFT (when it runs), the reward model and the policy.

    The reward model depends on neither SFT nor a policy that uses no reward-labelled samples; with
    `parallel_stages=on` (app/config.py) it trains in a child process (worker/launch.py) on half the CPU
    threads while this process runs SFT, and the policy too when the policy does not need it; this process
    takes the threads back once the child is done. Otherwise, or with nothing to overlap, one after the
    other: SFT, reward model, policy. ("auto" does not split training: on the 2-core CPU it measured 10%
    slower than one process on both threads, bench/RESULTS.md "Two processes or one".)
    """
    policy_free = ctx.cfg.policy_method in ("dpo", "dpo_ranking") and ctx.cfg.synthetic_prompts <= 0
    sft_runs = _sft_runs(ctx, rd)
    split = parallel_threads(ctx, auto=False) if policy_free or sft_runs else None
    if split is None:
        start_adapter = stage_sft(ctx, rd, parent)
        reward = stage_reward(ctx, rd)
        return reward, stage_policy(ctx, rd, reward, start_adapter)
    mine, theirs = split
    beside = "SFT and the policy" if policy_free and sft_runs else "the policy" if policy_free else "SFT"
    cfg = configs.reward_config(ctx.cfg)
    out = ctx.scratch / "reward"
    ctx.progress.log(
        f"reward model: training in a child process beside {beside} ({theirs} thread(s); this process {mine})"
    )
    child = launch.start_stage("reward", cfg, rd.data.rankings, out, threads=theirs, data_dir=ctx.data_dir)
    policy = None
    try:
        with torch_threads(mine):
            ctx.progress.on_report(functools.partial(_regain_threads, ctx, child, mine + theirs))
            start_adapter = stage_sft(ctx, rd, parent)
            if policy_free:
                policy = stage_policy(ctx, rd, None, start_adapter)
            ctx.progress.on_report(None)
        if child.running():
            ctx.progress.log(f"{beside} done; waiting for the reward model")
        # Its progress so far (loss curve, steps) is relayed now, under its own stage.
        ctx.progress.stage("reward")
        result = child.wait(ctx.progress.callback(), ctx.progress.check)
    finally:
        ctx.progress.on_report(None)
        child.stop()
    reward = _reward_stage(ctx, cfg, out, result)
    if policy is None:  # it samples replies for the reward model to label: all threads again
        policy = stage_policy(ctx, rd, reward, start_adapter)
    return reward, policy


def _regain_threads(ctx: RoundContext, child: launch.Launch, threads: int) -> None:
    # Called at each progress report of SFT or the policy: once the reward model is done, its core is
    # free, and a stage that scales with threads (training does, on a few cores) should take it back.
    if child.running():
        return
    import torch

    ctx.progress.on_report(None)
    torch.set_num_threads(threads)
    ctx.progress.log(f"reward model done: continuing on {threads} threads")


def _reward_stage(ctx: RoundContext, cfg: Any, out: Path, result: Any) -> RewardStage:
    """Record a trained reward model's metrics, and the previous reward model's on the same held-out pairs."""
    from worker.reward import evaluate_reward_model

    metrics = dict(result.metrics)
    with ctx.sessions() as session:
        previous = versions.newest_reward(session, ctx.cfg.base_model, ctx.project_id)
    if previous is not None and previous.adapter_path and result.heldout_pairs:
        ctx.progress.log(f"scoring the previous reward model {previous.name} on the same held-out pairs")
        before = evaluate_reward_model(
            ctx.store.open(previous.adapter_path), result.heldout_pairs, data_dir=ctx.data_dir
        )
        metrics["previous_version_id"] = previous.id
        metrics["previous_heldout_accuracy"] = num(before.accuracy)
        metrics["previous_heldout_loss"] = num(before.loss)
    metrics = json_ready(metrics)
    ctx.progress.log(
        f"reward model: held-out accuracy {metrics.get('heldout_accuracy')} on "
        f"{metrics.get('heldout_pairs')} pairs (previous: {metrics.get('previous_heldout_accuracy', 'none')})"
    )
    ctx.record(reward=metrics)
    free_memory()
    return RewardStage(
        out, cfg.to_dict(), metrics, list(result.heldout_pairs), previous.id if previous else None
    )


@dataclass
class PolicyStage:
    dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]


def stage_policy(
    ctx: RoundContext, rd: RoundData, reward: RewardStage | None, start_adapter: Path | None
) -> PolicyStage:
    """LoRA DPO from the previous policy on human pairs plus reward-model-labelled pairs (or RLOO/GRPO, or DPO
    on whole rankings)."""
    if ctx.cfg.policy_method in ("rloo", "grpo"):
        if reward is None:
            raise ValueError(
                f"{ctx.cfg.policy_method} is rewarded by the round's reward model: train it first"
            )
        return stage_policy_online(ctx, rd, reward, start_adapter)
    if ctx.cfg.policy_method == "dpo_ranking":
        return stage_policy_dpo_ranking(ctx, rd, reward, start_adapter)
    from worker.data import ranking_to_pairs
    from worker.dpo_shared import reward_labelled_pairs

    human_pairs = ranking_to_pairs(rd.train_rankings)
    synthetic = synthetic_preferences(ctx, reward, start_adapter, reward_labelled_pairs)
    pairs = human_pairs + synthetic
    ctx.progress.log(f"DPO on {len(human_pairs)} human + {len(synthetic)} reward-labelled pairs")
    ctx.progress.stage("policy")
    cfg = configs.dpo_config(ctx.cfg)
    out = ctx.scratch / "policy"
    result = launch.run_stage(
        "dpo", cfg, pairs, out, previous_adapter=start_adapter, data_dir=ctx.data_dir, **_launch_options(ctx)
    )
    metrics = json_ready(result.metrics)
    metrics.update(human_pairs=len(human_pairs), synthetic_pairs=len(synthetic))
    ctx.record(policy=metrics)
    free_memory()
    return PolicyStage(out, cfg.to_dict(), metrics)


def stage_policy_dpo_ranking(
    ctx: RoundContext, rd: RoundData, reward: RewardStage | None, start_adapter: Path | None
) -> PolicyStage:
    """Plackett-Luce DPO on the human rankings plus reward-model-ranked fresh samples (same loss)."""
    from worker.dpo_shared import reward_labelled_rankings
    from worker.policy_dpo_ranking import train_dpo_ranking

    human = list(rd.train_rankings)
    synthetic = synthetic_preferences(ctx, reward, start_adapter, reward_labelled_rankings)
    ctx.progress.log(f"ranking DPO on {len(human)} human + {len(synthetic)} reward-ranked rankings")
    ctx.progress.stage("policy")
    cfg = configs.dpo_config(ctx.cfg)
    out = ctx.scratch / "policy"
    result = train_dpo_ranking(
        cfg,
        human + synthetic,
        out,
        previous_adapter=start_adapter,
        data_dir=ctx.data_dir,
        progress=ctx.progress.callback(),
    )
    metrics = json_ready(result.metrics)
    metrics.update(human_rankings=len(human), synthetic_rankings=len(synthetic))
    ctx.record(policy=metrics)
    free_memory()
    return PolicyStage(out, cfg.to_dict(), metrics)


def stage_policy_online(
    ctx: RoundContext, rd: RoundData, reward: RewardStage, start_adapter: Path | None
) -> PolicyStage:
    """Online RLOO or GRPO on the training prompts and unranked ones, rewarded by the new reward model."""
    from worker.policy_grpo import GRPOTrainConfig, train_grpo
    from worker.policy_rloo import train_rloo
    from worker.reward import load_reward_model

    with ctx.sessions() as session:
        unranked = snapshot_db.unlabelled_prompts(
            session, ctx.cfg.synthetic_prompts, ctx.cfg.seed, ctx.project_id
        )
    prompts = list(dict.fromkeys([r.prompt for r in rd.train_rankings] + unranked))
    ctx.progress.stage("policy")
    grpo = ctx.cfg.policy_method == "grpo"
    cfg = configs.grpo_config(ctx.cfg) if grpo else configs.rloo_config(ctx.cfg)
    ctx.progress.log(
        f"{ctx.cfg.policy_method.upper()} on {len(prompts)} prompts, {cfg.num_generations} samples each"
    )
    rm = load_reward_model(reward.dir, data_dir=ctx.data_dir)
    out = ctx.scratch / "policy"
    train = functools.partial(
        train_grpo if isinstance(cfg, GRPOTrainConfig) else train_rloo,
        previous_adapter=start_adapter,
        data_dir=ctx.data_dir,
        progress=ctx.progress.callback(),
    )
    result = train(cfg, prompts, rm, out)
    metrics = json_ready(result.metrics)
    ctx.record(policy=metrics)
    del rm
    free_memory()
    return PolicyStage(out, cfg.to_dict(), metrics)


def synthetic_preferences(
    ctx: RoundContext, reward: RewardStage | None, start_adapter: Path | None, label: Callable[..., list[Any]]
) -> list[Any]:
    """Preferences the new reward model labels on N fresh samples of prompts nobody ranked yet: `label` is
    worker.dpo_shared's reward_labelled_pairs (best vs worst) or reward_labelled_rankings (all, ranked)."""
    if ctx.cfg.synthetic_prompts <= 0:
        return []
    with ctx.sessions() as session:
        prompts = snapshot_db.unlabelled_prompts(
            session, ctx.cfg.synthetic_prompts, ctx.cfg.seed, ctx.project_id
        )
    if not prompts:
        return []
    if reward is None:
        raise ValueError("synthetic_prompts > 0 needs the round's reward model: train it first")
    from worker.models import load_causal_lm
    from worker.reward import load_reward_model

    ctx.progress.stage("policy_samples", total=len(prompts))
    ctx.progress.log(f"sampling {ctx.cfg.synthetic_samples} replies for {len(prompts)} unranked prompts")
    policy, tokenizer = load_causal_lm(ctx.cfg.base_model, data_dir=ctx.data_dir, adapter_dir=start_adapter)
    rm = load_reward_model(reward.dir, data_dir=ctx.data_dir)
    seed = ctx.cfg.seed + 1
    cand_cfg = configs.candidate_config(ctx.cfg, ctx.cfg.synthetic_samples, seed)
    labelled: list[Any] = []
    step = max(1, ctx.cfg.generation_batch_size // ctx.cfg.synthetic_samples)
    for start in range(0, len(prompts), step):
        chunk = prompts[start : start + step]
        labelled += label(policy, tokenizer, rm, chunk, dataclasses.replace(cand_cfg, seed=seed + start))
        ctx.progress.update(min(start + step, len(prompts)), len(prompts))
    del policy, rm
    free_memory()
    return labelled
