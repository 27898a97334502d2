"""Each trainer's config built from the round config, in one place per trainer.

The trainers (worker/sft.py, reward.py, policy_dpo.py, policy_rloo.py, policy_grpo.py,
generation.py) stay self-contained:
they take their own config dataclass and know nothing of rounds. This module is the one mapping from the
round's knobs to theirs; the LoRA block and the policy trainers' common block (seed, held-out share,
patience, weight decay) are written once. The trainer modules import torch, so they are imported only
when a builder runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.training.config import RoundConfig

if TYPE_CHECKING:
    from worker.dpo_shared import DPOTrainConfig
    from worker.generation import CandidateConfig
    from worker.policy_grpo import GRPOTrainConfig
    from worker.policy_rloo import RLOOTrainConfig
    from worker.reward import RewardConfig
    from worker.sft import SFTTrainConfig


def _lora(cfg: RoundConfig) -> dict[str, Any]:
    """Shape of a fresh adapter (a continued one keeps its own); the same for every trainer."""
    return {
        "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "lora_target_modules": cfg.lora_targets(),
        "lora_top_layers": cfg.lora_top_layers,
    }


def _policy_run(cfg: RoundConfig) -> dict[str, Any]:
    """What SFT, DPO, RLOO and GRPO share: base model, seed, early stopping and AdamW weight decay."""
    return {
        "base_model": cfg.base_model,
        "seed": cfg.seed,
        "heldout_fraction": cfg.policy_heldout_fraction,
        "patience": cfg.policy_patience,
        "min_heldout_prompts": cfg.policy_min_heldout_prompts,
        "weight_decay": cfg.policy_weight_decay,
        **_lora(cfg),
    }


def sft_config(cfg: RoundConfig) -> SFTTrainConfig:
    """SFT on demonstrations: its own learning rate and epochs, the policy's batch size."""
    from worker.sft import SFTTrainConfig

    return SFTTrainConfig(
        lr=cfg.sft_learning_rate,
        epochs=cfg.sft_epochs,
        batch_size=cfg.policy_batch_size,
        max_length=cfg.max_length,
        max_steps=cfg.policy_max_steps,
        **_policy_run(cfg),
    )


def reward_config(cfg: RoundConfig) -> RewardConfig:
    """The reward model: reward_* knobs, and the round's own held-out share (whole prompts)."""
    from worker.reward import RewardConfig

    return RewardConfig(
        base_model=cfg.base_model,
        lr=cfg.reward_learning_rate,
        epochs=cfg.reward_epochs,
        batch_size=cfg.reward_batch_size,
        weight_decay=cfg.reward_weight_decay,
        max_length=cfg.max_length,
        margin_scale=cfg.reward_margin_scale,
        seed=cfg.seed,
        heldout_fraction=cfg.heldout_fraction,
        min_heldout_prompts=cfg.reward_min_heldout_prompts,
        patience=cfg.reward_patience,
        **_lora(cfg),
    )


def dpo_config(cfg: RoundConfig) -> DPOTrainConfig:
    """DPO on preference pairs, or on rankings (policy_method=dpo_ranking: batch_size counts rankings)."""
    from worker.dpo_shared import DPOTrainConfig

    return DPOTrainConfig(
        beta=cfg.dpo_beta,
        lr=cfg.policy_learning_rate,
        epochs=cfg.policy_epochs,
        batch_size=cfg.policy_batch_size,
        grad_accum=cfg.policy_grad_accum,
        max_length=cfg.max_length,
        max_prompt_length=cfg.max_prompt_length,
        max_steps=cfg.policy_max_steps,
        **_policy_run(cfg),
    )


def _online(cfg: RoundConfig, generations: int, beta: float) -> dict[str, Any]:
    """What RLOO and GRPO share: policy_batch_size counts samples, so a step holds batch / generations
    prompts (at least 1); replies as long and as random as generation's."""
    return {
        "lr": cfg.policy_learning_rate,
        "epochs": cfg.policy_epochs,
        "prompts_per_step": max(1, cfg.policy_batch_size // generations),
        "num_generations": generations,
        "beta": beta,
        "max_prompt_length": cfg.max_prompt_length,
        "max_completion_length": cfg.max_new_tokens,
        # Greedy sampling would give every generation the same reply: no group baseline signal.
        "temperature": cfg.temperature or 1.0,
        "top_p": cfg.top_p,
        **_policy_run(cfg),
    }


def rloo_config(cfg: RoundConfig) -> RLOOTrainConfig:
    """RLOO: rloo_generations replies per prompt, rloo_beta."""
    from worker.policy_rloo import RLOOTrainConfig

    return RLOOTrainConfig(**_online(cfg, cfg.rloo_generations, cfg.rloo_beta))


def grpo_config(cfg: RoundConfig) -> GRPOTrainConfig:
    """GRPO: grpo_generations replies per prompt, grpo_beta, grpo_scale_rewards."""
    from worker.policy_grpo import GRPOTrainConfig

    return GRPOTrainConfig(
        scale_rewards=cfg.grpo_scale_rewards, **_online(cfg, cfg.grpo_generations, cfg.grpo_beta)
    )


def candidate_config(cfg: RoundConfig, k: int, seed: int) -> CandidateConfig:
    """Sampling `k` replies per prompt with the round's sampling knobs (generation, pairs, evaluation)."""
    from worker.generation import CandidateConfig, SamplingParams

    return CandidateConfig(
        k=k,
        sampling=SamplingParams(
            temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens
        ),
        batch_size=cfg.generation_batch_size,
        seed=seed,
        max_prompt_tokens=cfg.max_prompt_length,
        dedupe_threshold=cfg.dedupe_threshold,
    )
