"""What the policy trainers (worker/sft.py, policy_dpo.py, policy_dpo_ranking.py, policy_rloo.py,
policy_grpo.py) share.

A policy is one LoRA adapter on the unchanged base model. A trainer either continues the previous policy's
adapter, whose shape (rank, alpha, dropout, targets) then stays as it was, or starts a fresh one, which is a
no-op until trained, so a first round starts exactly at the base model. Whichever trainer wrote it, a policy
directory holds the adapter named "default", the tokenizer and POLICY_CONFIG_FILE; so each trainer can
continue from any other's output, and generation loads them all alike.

Every trainer also evaluates on held-out prompts every few updates, checkpoints at the same moments, stops
after `patience` evaluations without a better held-out score and ends on the best checkpoint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import EarlyStoppingCallback, TrainerCallback

from app.conversation import Message, PromptLike
from worker.data import ProgressCallback, WorkMeter, report_eta
from worker.models import lora_layers

POLICY_CONFIG_FILE = "policy_model.json"


@dataclass
class PolicyTrainResult:
    metrics: dict[str, Any]  # JSON-ready: held-out score, steps, best step, timing
    log_history: list[dict[str, Any]]  # the Trainer's own log (train and eval entries)


class ProgressToCallback(TrainerCallback):
    """Forwards the Trainer's training logs to our (step, total, value) progress callback."""

    def __init__(self, progress: ProgressCallback, keys: Sequence[str] = ("loss",)) -> None:
        self.progress = progress
        # The first of these in a log entry is reported: RLOO's loss can sit near 0 while its reward moves.
        self.keys = tuple(keys)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        if not (state.is_world_process_zero and logs):
            return
        for key in self.keys:
            if logs.get(key) is not None:
                self.progress(int(state.global_step), int(state.max_steps), float(logs[key]))
                return


class MeteredTrainerMixin:
    """For a TRL trainer class: counts the padded tokens of its forward passes into a WorkMeter and reports
    the ETA after each batch (training 3 units per token, forward and backward; evaluation 1). The Trainer
    itself reports only after optimizer steps, so evaluations and any pass before the first step (DPO's
    reference log-probabilities) would otherwise show no progress at all."""

    args: Any

    def __init__(self, meter: WorkMeter, progress: Any, total: int, *args: Any, **kwargs: Any) -> None:
        self._meter, self._progress, self._total = meter, progress, total
        super().__init__(*args, **kwargs)

    def _count(self, inputs: dict[str, Any], passes: int) -> None:
        self._meter.add(passes * int(inputs["input_ids"].numel()))
        if self.args.process_index == 0:
            state = getattr(self, "state", None)
            report_eta(self._progress, state.global_step if state else 0, self._total, self._meter.eta())

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        self._count(inputs, 3)
        return loss

    def prediction_step(
        self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: Any = None
    ) -> Any:
        out = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)  # type: ignore[misc]
        self._count(inputs, 1)
        return out


def padded_tokens(lengths: Sequence[int], batch_size: int) -> int:
    """Tokens a run of batches computes when each batch is padded to its longest member."""
    return sum(
        len(lengths[i : i + batch_size]) * max(lengths[i : i + batch_size])
        for i in range(0, len(lengths), batch_size)
    )


def trainer_callbacks(
    progress: ProgressCallback | None, patience: int | None, progress_keys: Sequence[str] = ("loss",)
) -> list[TrainerCallback]:
    """Progress forwarding (when asked for) and early stopping (when there is held-out data to watch)."""
    callbacks: list[TrainerCallback] = []
    if progress is not None:
        callbacks.append(ProgressToCallback(progress, progress_keys))
    if patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    return callbacks


class LoraShape(Protocol):
    """The adapter fields every policy trainer's config has."""

    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str] | str | None
    lora_top_layers: float


def policy_model(path: str, previous_adapter: Path | None, shape: LoraShape) -> tuple[Any, Any]:
    """(model, peft_config) for a TRL trainer: the previous adapter, trainable, and no config; or the base
    model and a fresh LoRA config (TRL wraps the model itself)."""
    from peft import LoraConfig, PeftModel, TaskType
    from transformers import AutoModelForCausalLM

    # fp32 master weights; on a GPU the Trainer's bf16 autocast does the fast part.
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if previous_adapter is not None:
        return PeftModel.from_pretrained(model, str(previous_adapter), is_trainable=True), None
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=shape.lora_r,
        lora_alpha=shape.lora_alpha,
        lora_dropout=shape.lora_dropout,
        **{
            "target_modules": shape.lora_target_modules,
            **lora_layers(model, shape.lora_top_layers, shape.lora_target_modules),
        },
    )
    return model, lora


def run_args(spec: Any, seed: int) -> dict[str, Any]:
    """The TRL config arguments every policy trainer (SFT, DPO, RLOO, GRPO) sets alike: seeds, device and
    precision, and no logging of its own (progress goes through our callback). `spec` is a DeviceSpec."""
    return {
        "seed": seed,
        "data_seed": seed,
        # bf16 only where the GPU supports it; TRL would otherwise turn it on and fail on CPU.
        "bf16": spec.use_bf16,
        "use_cpu": spec.device.type == "cpu",
        "report_to": "none",
        "disable_tqdm": True,
    }


def early_stopping_args(
    heldout: bool, eval_every: int, metric: str, greater_is_better: bool
) -> dict[str, Any]:
    """Trainer arguments for "evaluate and checkpoint every `eval_every` updates, end on the best checkpoint";
    all off without held-out data. Pair with transformers' EarlyStoppingCallback."""
    return {
        "eval_strategy": "steps" if heldout else "no",
        "eval_steps": eval_every,
        # Checkpoints at the evaluations, so the best one can be reloaded at the end.
        "save_strategy": "steps" if heldout else "no",
        "save_steps": eval_every,
        # The newest and the best: the Trainer's rotation never deletes the best checkpoint.
        "save_total_limit": 2,
        "save_only_model": True,
        "load_best_model_at_end": heldout,
        "metric_for_best_model": metric,
        "greater_is_better": greater_is_better,
    }


def schedule_metrics(trainer: Any) -> dict[str, Any]:
    """How training went: updates done and planned, the kept checkpoint's step, whether patience ran out."""
    state = trainer.state
    return {
        "steps": state.global_step,
        "total_steps": state.max_steps,
        # Without held-out data there is no checkpoint to choose: the last step is the one kept.
        "best_step": _checkpoint_step(state.best_model_checkpoint)
        if trainer.args.load_best_model_at_end
        else state.global_step,
        "stopped_early": state.global_step < state.max_steps,
        "device": str(trainer.args.device),
    }


def _checkpoint_step(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    tail = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def save_policy(trainer: Any, tokenizer: Any, output_dir: Path, meta: dict[str, Any]) -> None:
    """Write the "default" adapter, the tokenizer and POLICY_CONFIG_FILE to `output_dir` (main process only),
    and drop the Trainer's checkpoints."""
    if trainer.is_world_process_zero():
        write_policy(trainer.accelerator.unwrap_model(trainer.model), tokenizer, output_dir, meta)
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def write_policy(model: Any, tokenizer: Any, output_dir: Path, meta: dict[str, Any]) -> None:
    """The policy directory: the PEFT model's "default" adapter, the tokenizer and POLICY_CONFIG_FILE."""
    # Only our adapter: DPO's frozen "ref" copy is the previous version, already stored.
    model.save_pretrained(str(output_dir), selected_adapters=["default"])
    tokenizer.save_pretrained(str(output_dir))
    (Path(output_dir) / POLICY_CONFIG_FILE).write_text(json.dumps({"kind": "policy", **meta}, indent=2))


def cap_prompt(tokenizer: Any, prompt: PromptLike, max_tokens: int | None) -> PromptLike:
    """The prompt's last `max_tokens` tokens (of content): the end (the actual question) matters more than
    the start. A conversation loses its oldest turns first, keeping a system turn and starting with a user
    turn (chat templates expect one), then the beginning of its last turn."""
    if not max_tokens:
        return prompt
    if isinstance(prompt, str):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return prompt
        return str(tokenizer.decode(ids[-max_tokens:]))

    def size(turns: Sequence[Message]) -> int:
        return sum(len(tokenizer(m.content, add_special_tokens=False)["input_ids"]) for m in turns)

    system = list(prompt[:1]) if prompt[0].role == "system" else []
    if size(system) >= max_tokens:
        system = []
    budget = max_tokens - size(system)
    rest = list(prompt[len(system) :])
    while len(rest) > 1 and size(rest) > budget:
        rest = rest[1:]
        while len(rest) > 1 and rest[0].role != "user":
            rest = rest[1:]
    if size(rest) > budget:
        rest = [Message("user", str(cap_prompt(tokenizer, rest[-1].content, budget)))]
    turns = (*system, *rest)
    return turns[0].content if len(turns) == 1 else turns
