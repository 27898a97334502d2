"""Stages 4-5: win-rate of the new policy against its parent, then publication of both versions.

Publication puts both versions in the model store first (worker/store.py: complete, hashed, immutable),
then both rows in one transaction, which also hands the round's generation stage to the generate queue
(worker/rounds.py); a crashed attempt's versions without rows are removed before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from app.orm import ModelKind
from worker import rounds, versions
from worker.snapshot import Snapshot
from worker.stages.configs import candidate_config
from worker.stages.context import RoundContext, free_memory, timing
from worker.stages.prepare import Parent, RoundData
from worker.stages.train import PolicyStage, RewardStage


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
    from worker.adapters import AdapterHost, RewardHost
    from worker.generation import generate_candidates

    ctx.progress.stage("evaluate", total=2 * len(prompts))
    cand_cfg = dataclasses.replace(
        candidate_config(ctx.cfg, 1, ctx.cfg.seed + 2), refill_rounds=0, drop_empty=False
    )
    replies: dict[str, list[str]] = {}
    # The new policy and its parent are two adapters on one base, loaded once (worker.adapters).
    host = AdapterHost(ctx.cfg.base_model, data_dir=ctx.data_dir)
    for label, adapter in (("new", policy.dir), ("parent", parent.adapter)):
        with host.use(label if adapter is not None else None, adapter) as (model, tokenizer):
            out = generate_candidates(model, tokenizer, prompts, cand_cfg)
        replies[label] = [c[0].text if c else "" for c in out.candidates]
        ctx.progress.update(len(prompts) * (1 if label == "new" else 2), 2 * len(prompts))
    del host
    free_memory()
    rm = RewardHost(ctx.cfg.base_model, data_dir=ctx.data_dir).use("new", reward.dir)
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
    free_memory()
    return result


def stage_publish(
    ctx: RoundContext,
    snapshot: Snapshot,
    reward: RewardStage,
    policy: PolicyStage,
    evaluation: dict[str, Any],
    parent: Parent,
) -> tuple[int, int]:
    """Immutable version directories first, then both rows in one transaction (optionally promoted)."""
    from worker.artifacts import version_dir_name

    ctx.progress.stage("publish")
    name = f"round{ctx.round_id}-a{ctx.claim.attempt}"
    remove_orphans(ctx)
    run_timing = timing(ctx)
    round_info = {"round_id": ctx.round_id, "round_config": ctx.cfg.as_dict()}
    reward_metrics = {**reward.metrics, **run_timing}
    policy_metrics = {**policy.metrics, **evaluation, **run_timing}
    store = ctx.store
    # Complete in the store (manifest written) before either row exists.
    reward_location = store.publish(
        "reward",
        name,
        source_dir=reward.dir,
        config={**reward.config, **round_info},
        metrics=reward_metrics,
        data_snapshot_id=snapshot.id,
        parent_id=reward.parent_id,
        base_model=ctx.cfg.base_model,
    )
    policy_location = store.publish(
        "policy",
        name,
        source_dir=policy.dir,
        config={**policy.config, **round_info},
        metrics=policy_metrics,
        data_snapshot_id=snapshot.id,
        parent_id=parent.version_id,
        base_model=ctx.cfg.base_model,
    )
    reward_name, policy_name = version_dir_name("reward", name), version_dir_name("policy", name)
    promote = ctx.cfg.promote(ctx.settings)
    # From the commit below the round belongs to its generation job; this job's progress writer stops here.
    ctx.progress.hand_over()
    with ctx.sessions() as session, session.begin():
        reward_id, policy_id, outcome = versions.publish(
            session,
            ctx.round_id,
            snapshot.id,
            versions.NewVersion(
                reward_name,
                ModelKind.reward,
                ctx.cfg.base_model,
                reward_location,
                reward.parent_id,
                {**reward.config, **round_info},
                reward_metrics,
            ),
            versions.NewVersion(
                policy_name,
                ModelKind.policy,
                ctx.cfg.base_model,
                policy_location,
                parent.version_id,
                {**policy.config, **round_info},
                policy_metrics,
            ),
            promote,
            ctx.settings,
            ctx.project_id,
        )
        rounds.hand_to_generation(
            session,
            ctx.round_id,
            {
                "data_snapshot_id": snapshot.id,
                "rankings": len(snapshot.ranking_ids),
                "reward_version_id": reward_id,
                "policy_version_id": policy_id,
                **evaluation,
                **run_timing,
            },
            f"published {reward_name} (#{reward_id}) and {policy_name} (#{policy_id}), {outcome}",
        )
    return reward_id, policy_id


def remove_orphans(ctx: RoundContext) -> list[str]:
    """Delete this round's versions in the store that an earlier, crashed attempt left without rows
    (complete, or an upload cut short)."""
    removed = []
    store = ctx.store
    for kind in ("reward", "policy"):
        prefix = f"{kind}-round{ctx.round_id}-a"
        with ctx.sessions() as session:
            known = versions.version_names_of_round(session, prefix)
        for dir_name in store.version_names(prefix):
            if dir_name not in known:
                store.remove(dir_name)
                removed.append(dir_name)
    if removed:
        ctx.progress.log(f"removed {len(removed)} unpublished versions of an earlier attempt")
    return removed
