"""Policy update by RLOO (REINFORCE Leave-One-Out, Ahmadian et al. 2024) with TRL's RLOOTrainer.

Online, unlike DPO: for each training prompt the policy samples `num_generations` replies, the round's new
reward model scores them, and each reply's advantage is its reward minus the mean reward of the other
replies to the same prompt. A KL penalty (`beta`) keeps the policy near its starting point.

The policy is a LoRA adapter like the DPO one (same directory layout, worker/policy_dpo.py), continued from
the previous policy's adapter when there is one. With a PEFT model TRL computes the KL reference by
disabling the adapter, so the anchor is the base model rather than the previous policy; `beta` is small
for that reason.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, TrainerCallback

from worker.data import ProgressCallback
from worker.models import load_tokenizer, pick_device, resolve_model_path
from worker.policy_dpo import POLICY_CONFIG_FILE
from worker.reward import RewardModel


@dataclass
class RLOOTrainConfig:
    base_model: str
    lr: float = 1e-5
    epochs: int = 1  # passes over the prompts
    prompts_per_step: int = 2  # distinct prompts per optimiser step
    num_generations: int = 4  # sampled replies per prompt; the leave-one-out baseline needs >= 2
    beta: float = 0.05  # KL penalty towards the reference
    max_prompt_length: int = 256
    max_completion_length: int = 128
    temperature: float = 0.8
    top_p: float = 0.95
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Progress(TrainerCallback):
    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if state.is_world_process_zero and logs:
            value = logs.get("loss", logs.get("reward"))
            if value is not None:
                self.progress(int(state.global_step), int(state.max_steps), float(value))


def _content(message: Any) -> str:
    # Conversational datasets hand over message lists; plain ones hand over strings.
    if isinstance(message, list):
        return str(message[-1]["content"]) if message else ""
    return str(message)


def train_rloo(
    cfg: RLOOTrainConfig,
    prompts: Sequence[str],
    reward_model: RewardModel,
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train (or continue) a LoRA policy with RLOO against the reward model; save it; return metrics."""
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, TaskType
    from transformers import AutoModelForCausalLM
    from trl import RLOOConfig, RLOOTrainer

    if not prompts:
        raise ValueError("no prompts to optimise the policy on")
    started = time.perf_counter()
    spec = pick_device()
    output_dir = Path(output_dir)
    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="left")
    conversational = bool(getattr(tokenizer, "chat_template", None))
    records = [{"prompt": [{"role": "user", "content": p}] if conversational else p} for p in prompts]
    dataset = Dataset.from_list(records)

    def reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float | None]:
        exchanges = [(_content(p), _content(c)) for p, c in zip(prompts, completions, strict=True)]
        return list(reward_model.score_exchanges(exchanges))

    reward.__name__ = "reward_model"

    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    peft_config = None
    if previous_adapter is not None:
        model = PeftModel.from_pretrained(model, str(previous_adapter), is_trainable=True)
    else:
        peft_config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
        )
    work_dir = output_dir / ".checkpoints"
    args = RLOOConfig(
        output_dir=str(work_dir),
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.num_generations,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=spec.use_bf16,
        use_cpu=spec.device.type == "cpu",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = RLOOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_Progress(progress)] if progress is not None else [],
    )
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    if trainer.is_world_process_zero():
        policy = trainer.accelerator.unwrap_model(trainer.model)
        policy.save_pretrained(str(output_dir), selected_adapters=["default"])
        tokenizer.save_pretrained(str(output_dir))
        meta = {"base_model": cfg.base_model, "kind": "policy", "method": "rloo"}
        (output_dir / POLICY_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        shutil.rmtree(work_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    loss = result.training_loss
    return {
        "method": "rloo",
        "prompts": len(prompts),
        "steps": trainer.state.global_step,
        "total_steps": trainer.state.max_steps,
        "train_loss": None if loss is None or math.isnan(loss) else loss,
        "first_mean_reward": rewards[0] if rewards else None,
        "last_mean_reward": rewards[-1] if rewards else None,
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(trainer.args.device),
    }
