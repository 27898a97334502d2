"""Optional supervised fine-tuning: a LoRA adapter trained with TRL's SFTTrainer on human-written replies.

Data: demonstrations (a prompt with the reply a person wrote for it) and human-written candidates that an
annotator ranked first. Loss only on the reply tokens (TRL's prompt-completion format), through the chat
template like generation. When a previous policy adapter exists, training continues from it, so SFT moves
the current policy rather than restarting from the base model. The saved directory has the same layout as
a DPO policy (worker/policy_dpo.py), so DPO can continue from it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, TrainerCallback

from worker.data import ProgressCallback
from worker.models import load_tokenizer, pick_device, resolve_model_path
from worker.policy_dpo import POLICY_CONFIG_FILE


@dataclass(frozen=True)
class Demonstration:
    prompt: str
    completion: str


@dataclass
class SFTTrainConfig:
    base_model: str
    lr: float = 2e-4  # LoRA learning rate
    epochs: int = 1  # passes over the demonstrations
    batch_size: int = 4
    lora_r: int = 16  # fresh adapters only; a continued adapter keeps its shape
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    max_length: int = 1024  # prompt + reply tokens
    seed: int = 0


class _Progress(TrainerCallback):
    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if state.is_world_process_zero and logs and "loss" in logs:
            self.progress(int(state.global_step), int(state.max_steps), float(logs["loss"]))


def train_sft(
    cfg: SFTTrainConfig,
    demonstrations: Sequence[Demonstration],
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train (or continue) a LoRA adapter on the demonstrations; save it to `output_dir`; return metrics."""
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, TaskType
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    if not demonstrations:
        raise ValueError("no demonstrations to fine-tune on")
    started = time.perf_counter()
    spec = pick_device()
    output_dir = Path(output_dir)
    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    if getattr(tokenizer, "chat_template", None):
        records: list[dict[str, Any]] = [
            {
                "prompt": [{"role": "user", "content": d.prompt}],
                "completion": [{"role": "assistant", "content": d.completion}],
            }
            for d in demonstrations
        ]
    else:
        records = [{"prompt": d.prompt, "completion": d.completion} for d in demonstrations]
    dataset = Dataset.from_list(records)

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
    args = SFTConfig(
        output_dir=str(work_dir),
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=spec.use_bf16,
        use_cpu=spec.device.type == "cpu",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_Progress(progress)] if progress is not None else [],
    )
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    if trainer.is_world_process_zero():
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
        meta = {"base_model": cfg.base_model, "kind": "policy", "stage": "sft"}
        (output_dir / POLICY_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        shutil.rmtree(work_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    loss = result.training_loss
    return {
        "demonstrations": len(demonstrations),
        "steps": trainer.state.global_step,
        "train_loss": None if loss is None or math.isnan(loss) else loss,
        "seconds": round(time.perf_counter() - started, 3),
        "continued_from_previous_policy": previous_adapter is not None,
    }
