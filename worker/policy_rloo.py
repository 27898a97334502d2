"""Policy update by RLOO (REINFORCE Leave-One-Out, Ahmadian et al. 2024) with TRL's RLOOTrainer.

Online, unlike DPO: each reply's advantage is its reward minus the mean reward of the other replies sampled
for the same prompt. Data, adapter, held-out prompts and early stopping: worker/policy_online.py, shared
with GRPO.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.conversation import PromptLike
from worker.data import ProgressCallback
from worker.lora_policy import PolicyTrainResult
from worker.policy_online import OnlineTrainConfig, train_online
from worker.reward_scoring import RewardModel


@dataclass
class RLOOTrainConfig(OnlineTrainConfig):
    """The common online knobs; RLOO's leave-one-out baseline has none of its own here."""


def train_rloo(
    cfg: RLOOTrainConfig,
    prompts: Sequence[PromptLike],
    reward_model: RewardModel,
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> PolicyTrainResult:
    """Train (or continue) a LoRA policy by RLOO against the reward model; the best held-out one is saved."""
    from trl import RLOOConfig, RLOOTrainer

    return train_online(
        "rloo",
        (RLOOConfig, RLOOTrainer),
        cfg,
        prompts,
        reward_model,
        output_dir,
        previous_adapter=previous_adapter,
        data_dir=data_dir,
        progress=progress,
    )
