"""Policy update by GRPO (Group Relative Policy Optimization, Shao et al. 2024) with TRL's GRPOTrainer.

Online like RLOO: each prompt's `num_generations` sampled replies form a group, and a reply's advantage is
its reward minus the group's mean, divided by the group's standard deviation (`scale_rewards="group"`, the
paper's form), by the whole batch's (`"batch"`) or not at all (`"none"`, as Dr. GRPO recommends against
the difficulty bias). The policy-gradient term uses a PPO-style clipped importance ratio (TRL's `epsilon`)
and TRL's default token-level loss normalisation (DAPO's). The reward is the round's new reward model, the
KL anchor the base model (see worker/policy_online.py, which holds the data, adapter, held-out prompts and
early stopping shared with RLOO).

TRL's GRPOTrainer defaults to beta=0 (no reference model); with a learned reward model a small KL term is
the usual guard against reward hacking, so the round's `grpo_beta` defaults to RLOO's 0.05.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.conversation import PromptLike
from worker.data import ProgressCallback
from worker.lora_policy import PolicyTrainResult
from worker.policy_online import OnlineTrainConfig, train_online
from worker.reward_scoring import RewardModel

SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPOTrainConfig(OnlineTrainConfig):
    scale_rewards: str = "group"  # the advantage's divisor: the group's reward std, the batch's, or none

    def trainer_args(self) -> dict[str, Any]:
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}")
        return {"scale_rewards": self.scale_rewards}


def train_grpo(
    cfg: GRPOTrainConfig,
    prompts: Sequence[PromptLike],
    reward_model: RewardModel,
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> PolicyTrainResult:
    """Train (or continue) a LoRA policy by GRPO against the reward model; the best held-out one is saved."""
    from trl import GRPOConfig, GRPOTrainer

    return train_online(
        "grpo",
        (GRPOConfig, GRPOTrainer),
        cfg,
        prompts,
        reward_model,
        output_dir,
        previous_adapter=previous_adapter,
        data_dir=data_dir,
        progress=progress,
    )
