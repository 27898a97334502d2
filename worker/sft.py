"""Optional supervised fine-tuning: a LoRA adapter trained with TRL's SFTTrainer on human-written replies.

Data: demonstrations (a prompt with the reply a person wrote for it) and human-written candidates that an
annotator ranked first. Loss only on the reply tokens (TRL's prompt-completion format), through the chat
template like generation. When a previous policy adapter exists, training continues from it, so SFT moves
the current policy rather than restarting from the base model. The saved directory has the policy layout
(worker/lora_policy.py), so DPO or RLOO continue from it.

Whole prompts are held out; the held-out reply loss is evaluated a few times per run, training stops when
it stops improving (small demonstration sets are memorised within a few epochs) and the best adapter is the
one saved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import PrinterCallback
from trl import SFTTrainer

from app.conversation import PromptLike, flatten, to_messages
from worker.data import ProgressCallback, WorkMeter, per_process_batch, report_eta, split_by_prompt
from worker.lora_policy import (
    MeteredTrainerMixin,
    PolicyTrainResult,
    early_stopping_args,
    padded_tokens,
    policy_model,
    run_args,
    save_policy,
    schedule_metrics,
    trainer_callbacks,
)
from worker.models import format_exchange, load_tokenizer, pick_device, resolve_model_path


class _MeteredSFTTrainer(MeteredTrainerMixin, SFTTrainer):
    """TRL's SFTTrainer reporting an ETA after every batch, evaluations included."""


def _demo_tokens(tokenizer: Any, demos: Sequence[Demonstration], max_length: int) -> list[int]:
    if not demos:
        return []
    add_special = not getattr(tokenizer, "chat_template", None)
    texts = [format_exchange(tokenizer, d.prompt, d.completion) for d in demos]
    return [
        min(len(ids), max_length) for ids in tokenizer(texts, add_special_tokens=add_special)["input_ids"]
    ]


@dataclass(frozen=True)
class Demonstration:
    prompt: PromptLike  # a text or a conversation (app.conversation)
    completion: str


@dataclass
class SFTTrainConfig:
    base_model: str  # the default name, an HF model id or a local path
    lr: float = 2e-4  # AdamW learning rate; LoRA wants far more than full fine-tuning
    epochs: int = 1  # passes over the training demonstrations (early stopping may end sooner)
    max_steps: int = 0  # cap on optimizer updates; 0: the epochs decide
    batch_size: int = 4  # demonstrations per device per update
    weight_decay: float = 0.0  # AdamW decoupled weight decay on the LoRA weights
    lora_r: int = 16  # LoRA rank; fresh adapters only, a continued adapter keeps its shape
    lora_alpha: int = 32  # LoRA scaling numerator (effective scale alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch input
    # Module names to adapt, or "all-linear"; None: PEFT's per-architecture default (e.g. q/v projections).
    lora_target_modules: list[str] | str | None = None
    lora_top_layers: float = 1.0  # share of the layers, from the top, that get a fresh LoRA; 1: all
    max_length: int = 1024  # prompt + reply tokens; TRL truncates the end of longer ones
    seed: int = 0  # seeds the held-out split, LoRA initialisation and data order
    heldout_fraction: float = 0.1  # share of PROMPTS kept out of training; fewer than 2 prompts: none
    patience: int = 2  # evaluations without held-out loss improvement before stopping
    min_heldout_prompts: int = 1  # a held-out share under this many prompts is not held out (no selection)
    eval_every: int | None = None  # updates between evaluations; None: about 5 evaluations per run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _to_records(demonstrations: Sequence[Demonstration], conversational: bool) -> list[dict[str, Any]]:
    if conversational:
        return [
            {
                "prompt": to_messages(d.prompt),
                "completion": [{"role": "assistant", "content": d.completion}],
            }
            for d in demonstrations
        ]
    return [{"prompt": flatten(d.prompt), "completion": d.completion} for d in demonstrations]


def train_sft(
    cfg: SFTTrainConfig,
    demonstrations: Sequence[Demonstration],
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> PolicyTrainResult:
    """Train (or continue) a LoRA adapter on the demonstrations; the best held-out adapter is saved."""
    from accelerate import PartialState
    from datasets import Dataset
    from trl import SFTConfig

    if not demonstrations:
        raise ValueError("no demonstrations to fine-tune on")
    started = time.perf_counter()
    spec = pick_device()
    output_dir = Path(output_dir)

    # Data: whole prompts held out, so the held-out loss measures replies to prompts never trained on.
    split = split_by_prompt(list(demonstrations), cfg.heldout_fraction, cfg.seed, cfg.min_heldout_prompts)
    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    conversational = bool(getattr(tokenizer, "chat_template", None))
    train_ds = Dataset.from_list(_to_records(split.train, conversational))
    eval_ds = Dataset.from_list(_to_records(split.heldout, conversational)) if split.heldout else None

    # Schedule: evaluate (and checkpoint) a handful of times so early stopping has something to act on.
    # `batch_size` is the global batch, split across the data-parallel processes (worker/launch.py).
    world = PartialState().num_processes
    per_device = per_process_batch(cfg.batch_size, world)
    updates_per_epoch = max(1, math.ceil(len(split.train) / (per_device * world)))
    total_updates = updates_per_epoch * cfg.epochs
    if cfg.max_steps > 0:
        total_updates = min(total_updates, cfg.max_steps)
    eval_every = cfg.eval_every or max(1, total_updates // 4)
    # ETA: training 3 units per padded token (batches of similar length), each evaluation 1.
    train_len = sorted(_demo_tokens(tokenizer, split.train, cfg.max_length))
    held_len = _demo_tokens(tokenizer, split.heldout, cfg.max_length)
    per_update = padded_tokens(train_len, cfg.batch_size) / max(1, updates_per_epoch)
    n_evals = total_updates // eval_every if held_len else 0
    # Each process meters its own share of the work.
    meter = WorkMeter(
        (3 * per_update * total_updates + n_evals * padded_tokens(held_len, cfg.batch_size)) / world
    )
    report_eta(progress, 0, total_updates, None)

    # Model: the previous policy's adapter, trainable, or a fresh LoRA.
    model, peft_config = policy_model(path, previous_adapter, cfg)
    args = SFTConfig(
        output_dir=str(output_dir / ".checkpoints"),
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        # Our plan, not cfg.max_steps: the Trainer runs a positive max_steps to the end whatever the epochs
        # say, so a cap above the epochs' updates (policy_max_steps, 32 by default) made it train 32 updates.
        max_steps=total_updates,
        # Batches of demonstrations of similar length: each is padded to its longest member.
        train_sampling_strategy="group_by_length",
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        logging_steps=1,
        **run_args(spec, cfg.seed),
        **early_stopping_args(eval_ds is not None, eval_every, "eval_loss", greater_is_better=False),
    )
    trainer = _MeteredSFTTrainer(
        meter,
        progress,
        total_updates,
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=trainer_callbacks(progress, cfg.patience if eval_ds is not None else None),
    )
    # With tqdm off the Trainer prints every log dict to stdout; progress goes through our callback instead.
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    save_policy(trainer, tokenizer, output_dir, {"base_model": cfg.base_model, "stage": "sft"})

    loss = result.training_loss
    metrics: dict[str, Any] = {
        "demonstrations": len(demonstrations),
        "train_demonstrations": len(split.train),
        "heldout_demonstrations": len(split.heldout),
        "heldout_prompts": len(split.heldout_prompts),
        # The best evaluation's loss: the adapter saved is that checkpoint.
        "heldout_loss": trainer.state.best_metric if eval_ds is not None else None,
        "train_loss": None if loss is None or math.isnan(loss) else loss,
        **schedule_metrics(trainer),
        "seconds": round(time.perf_counter() - started, 3),
        "continued_from_previous_policy": previous_adapter is not None,
        "processes": world,  # as the reward and DPO stages report it: which data-parallel layout trained it
    }
    return PolicyTrainResult(metrics, list(trainer.state.log_history))
