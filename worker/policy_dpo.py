"""Policy update: LoRA DPO (Rafailov et al. 2023) with TRL's DPOTrainer on (prompt, chosen, rejected) pairs.

Reference model = the previous policy, without a second copy of the weights:
- first round (no previous adapter): a fresh LoRA adapter on the base model. LoRA starts as a no-op, so the
  base model with the adapter disabled is exactly the previous policy; TRL computes the reference
  log-probabilities that way.
- later rounds: the previous adapter is loaded trainable and training continues from it. TRL copies it into a
  frozen second adapter named "ref" and computes the reference log-probabilities with that one, so the
  reference is base + previous adapter, i.e. the policy that produced the data. The LoRA shape (rank, alpha,
  dropout, targets) is then the previous adapter's; the `lora_*` fields only apply to a fresh adapter.
We chose this over merging the previous adapter into the base weights because every version then stays a
single adapter on the unchanged base model: loadable on its own, no chain of merged checkpoints.

Pairs are given to TRL in its conversational format (the prompt's turns, an assistant message), so prompts
and replies go through the model's chat template exactly as in generation; models without a template get
plain text (a conversation flattened).

Device: CUDA (bf16 where supported) when available; on CPU, fp32 with `use_cpu=True` and `bf16=False`
(TRL's configs default to bf16 and refuse it on CPU). Several GPUs: `worker.launch.run_stage("dpo", ...,
processes=N)` (what `rankloop worker --gpus N` does) runs `train_dpo` under torchrun; `batch_size` stays the
global batch, split across the processes, the Trainer shards the pairs and all-reduces gradients and
logged losses (tested with 2 CPU processes on gloo); only the main process writes the output directory
and calls the progress callback.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PrinterCallback
from trl import DPOTrainer

from app.conversation import flatten, to_messages
from worker.data import (
    PreferencePair,
    ProgressCallback,
    Split,
    WorkMeter,
    length_buckets,
    per_process_batch,
    report_eta,
    split_by_prompt,
    widest_gap_first,
)

# Re-exported: callers and tests know these by their old home.
from worker.dpo_shared import DPOTrainConfig as DPOTrainConfig
from worker.dpo_shared import completion_logprobs as completion_logprobs
from worker.dpo_shared import reward_labelled_pairs as reward_labelled_pairs
from worker.dpo_shared import schedule as schedule
from worker.lora_policy import POLICY_CONFIG_FILE as POLICY_CONFIG_FILE  # re-exported for older callers
from worker.lora_policy import (
    MeteredTrainerMixin,
    cap_prompt,
    early_stopping_args,
    policy_model,
    run_args,
    save_policy,
    schedule_metrics,
    trainer_callbacks,
)
from worker.models import format_exchange, load_tokenizer, pick_device, resolve_model_path
from worker.weighting import WeightedForward, normalised_weights, with_weights


@dataclass
class DPOTrainResult:
    metrics: dict[str, Any]  # JSON-ready: held-out DPO loss/reward accuracy, steps, timing
    heldout_pairs: list[PreferencePair]
    log_history: list[dict[str, Any]]  # the Trainer's own log (train and eval entries)


def _to_records(
    pairs: Sequence[PreferencePair], conversational: bool, weighted: bool = False
) -> list[dict[str, Any]]:
    """TRL's records of the pairs; with `weighted`, each carries its pair's weight too."""
    if conversational:
        records: list[dict[str, Any]] = [
            {
                "prompt": to_messages(p.prompt),
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in pairs
        ]
    else:
        records = [{"prompt": flatten(p.prompt), "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    if weighted:
        for record, p in zip(records, pairs, strict=True):
            record["weight"] = float(p.weight)
    return records


class _MeteredDPOTrainer(MeteredTrainerMixin, DPOTrainer):
    """TRL's DPOTrainer reporting an ETA after every batch, the reference pass included, and weighting each
    pair's loss by its `weight` column when the training data has one (annotator weights)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data_collator = with_weights(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and "weight" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "weight"]

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        inputs = {k: v for k, v in inputs.items() if k != "weight"}
        out = super().compute_ref_log_probs(model, inputs)
        self._count(inputs, 1)
        return out

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        weights = inputs.pop("weight", None)
        if weights is not None:
            model = WeightedForward(model, weights)
        return super()._compute_loss(model, inputs, return_outputs)


def _dataset(records: list[dict[str, Any]], shared_dir: Path) -> Any:
    """The records as a Dataset; with several processes, one saved to `shared_dir` by the main process.

    TRL caches the precomputed reference log-probabilities next to the dataset's files: rank 0 writes them,
    the others read them. An in-memory dataset's cache lives in a per-process temporary directory, where
    the other ranks would not find it.
    """
    from accelerate import PartialState
    from datasets import Dataset, load_from_disk

    state = PartialState()
    if state.num_processes <= 1:
        return Dataset.from_list(records)
    if state.is_main_process:
        Dataset.from_list(records).save_to_disk(str(shared_dir))
    state.wait_for_everyone()
    return load_from_disk(str(shared_dir))


def _best_eval(trainer: Any) -> dict[str, Any]:
    """The evaluation log entry of the checkpoint the Trainer kept (the best one), or the last evaluation."""
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    best = trainer.state.best_global_step
    return next((e for e in evals if e.get("step") == best), evals[-1] if evals else {})


def _pair_tokens(tokenizer: Any, pair: PreferencePair, max_length: int) -> int:
    """Tokens of the longer of the pair's two sequences (prompt + reply), capped like TRL caps them."""
    add_special = not getattr(tokenizer, "chat_template", None)
    longest = max(
        len(
            tokenizer(format_exchange(tokenizer, pair.prompt, reply), add_special_tokens=add_special)[
                "input_ids"
            ]
        )
        for reply in (pair.chosen, pair.rejected)
    )
    return min(longest, max_length) if max_length else longest


def _dpo_meter(
    lengths: Sequence[int],
    order: Sequence[int],
    heldout: Sequence[PreferencePair],
    tokenizer: Any,
    cfg: DPOTrainConfig,
    total_updates: int,
    eval_every: int,
    world: int,
) -> WorkMeter:
    """The work a DPO run plans, in padded tokens times passes: the reference pass over train and held-out
    pairs (1), the optimizer steps (3: forward and backward) and the evaluations (1 each, reference reused).
    A batch holds chosen and rejected sequences, padded to its longest one."""

    def padded(lens: Sequence[int], batch: int) -> list[int]:
        return [2 * len(lens[i : i + batch]) * max(lens[i : i + batch]) for i in range(0, len(lens), batch)]

    ordered = [lengths[i] for i in order]
    step_tokens = padded(ordered, cfg.batch_size)
    held = [_pair_tokens(tokenizer, p, cfg.max_length) for p in heldout]
    eval_tokens = sum(padded(held, cfg.batch_size)) if held else 0
    n_evals = max(1, total_updates // eval_every) if held else 0
    per_update = sum(step_tokens) / max(1, len(step_tokens)) * cfg.grad_accum
    ref = sum(padded(ordered, 2 * cfg.batch_size)) + (sum(padded(held, 2 * cfg.batch_size)) if held else 0)
    # `batch_size` is the global batch; each of the `world` processes meters its own share.
    return WorkMeter((ref + 3 * per_update * total_updates + eval_tokens * n_evals) / world)


def train_dpo(
    cfg: DPOTrainConfig,
    pairs: Sequence[PreferencePair],
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> DPOTrainResult:
    """DPO-train a LoRA policy on these pairs; the best held-out adapter is saved to `output_dir`."""
    from accelerate import PartialState
    from trl import DPOConfig

    started = time.perf_counter()
    spec = pick_device(cfg.device)
    output_dir = Path(output_dir)

    # Data: whole prompts held out, so the held-out loss measures generalisation to new prompts.
    split = split_by_prompt(list(pairs), cfg.heldout_fraction, cfg.seed, cfg.min_heldout_prompts)
    # Annotator weights (all 1 unless the round weighs annotators): a per-pair multiplier on the loss.
    weighted = any(p.weight != 1.0 for p in split.train)
    if weighted:
        split = Split(normalised_weights(split.train), split.heldout, split.heldout_prompts)
    if not split.train:
        raise ValueError("no training pairs")

    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    conversational = bool(getattr(tokenizer, "chat_template", None))
    if cfg.max_prompt_length:
        # TRL only caps prompt + reply; cutting the prompt first keeps the replies, which carry the signal.
        def cap(p: PreferencePair) -> PreferencePair:
            return dataclasses.replace(p, prompt=cap_prompt(tokenizer, p.prompt, cfg.max_prompt_length))

        split = Split([cap(p) for p in split.train], [cap(p) for p in split.heldout], split.heldout_prompts)
    # Batches of pairs of similar length (each is padded to its longest sequence), in a seeded random order
    # that the Trainer then keeps (sequential sampling): the pairs are reordered, not resampled.
    lengths = [_pair_tokens(tokenizer, p, cfg.max_length) for p in split.train]
    # `batch_size` is the global batch: each of the `world` processes takes its share of every batch of the
    # order (the Trainer hands consecutive per-process batches to ranks 0..world-1), so N GPUs take the
    # same steps on the same pairs as one.
    world = PartialState().num_processes
    per_device = per_process_batch(cfg.batch_size, world)
    per_update = per_device * cfg.grad_accum * world
    epochs = cfg.epochs
    kept = list(range(len(split.train)))
    if cfg.max_steps > 0 and cfg.max_steps * per_update < len(kept) * cfg.epochs:
        # Fewer updates than the data: train on the pairs those updates reach, the most reliable first (widest
        # rank gap), and compute reference log-probabilities only for them.
        kept = widest_gap_first(split.train, cfg.max_steps * per_update, cfg.seed)
        epochs = 1.0
    kept_lengths = [lengths[i] for i in kept]
    order = [kept[j] for batch in length_buckets(kept_lengths, cfg.batch_size, cfg.seed) for j in batch]
    data_dir_shared = output_dir / ".checkpoints" / "data"
    train_ds = _dataset(
        _to_records([split.train[i] for i in order], conversational, weighted), data_dir_shared / "train"
    )
    eval_ds = (
        _dataset(_to_records(split.heldout, conversational), data_dir_shared / "heldout")
        if split.heldout
        else None
    )

    # Schedule: evaluate (and checkpoint) a handful of times so early stopping has something to act on.
    updates_per_epoch = max(1, math.ceil(len(order) / per_update))
    total_updates = max(1, math.ceil(updates_per_epoch * epochs))
    if cfg.max_steps > 0:
        total_updates = min(total_updates, cfg.max_steps)
    warmup_steps, eval_every = schedule(total_updates, cfg.warmup_ratio, cfg.eval_every)
    meter = _dpo_meter(lengths, order, split.heldout, tokenizer, cfg, total_updates, eval_every, world)
    report_eta(progress, 0, total_updates, None)

    # Model: the previous adapter (trainable; TRL keeps a frozen copy as the reference) or a fresh LoRA.
    model, peft_config = policy_model(path, previous_adapter, cfg)

    work_dir = output_dir / ".checkpoints"
    args = DPOConfig(
        output_dir=str(work_dir),
        beta=cfg.beta,
        learning_rate=cfg.lr,
        num_train_epochs=epochs,
        # Our plan, not cfg.max_steps: the Trainer runs a positive max_steps to the end whatever the epochs
        # say, so a cap above the epochs' updates made it repeat the pairs up to the cap.
        max_steps=total_updates,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=cfg.grad_accum,
        weight_decay=cfg.weight_decay,
        warmup_steps=warmup_steps,
        lr_scheduler_type="linear",
        max_length=cfg.max_length,
        train_sampling_strategy="sequential",
        # The reference policy is frozen: its log-probabilities are computed once per round, before the
        # first step, and reused by every step and every evaluation (no second forward pass per step).
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=2 * cfg.batch_size,
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        **run_args(spec, cfg.seed),
        **early_stopping_args(eval_ds is not None, eval_every, "eval_loss", greater_is_better=False),
    )
    trainer = _MeteredDPOTrainer(
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
    train_output = trainer.train()
    # The model now holds the best checkpoint (load_best_model_at_end); its evaluation is in the log already.
    final_eval = _best_eval(trainer) if eval_ds is not None else {}

    save_policy(
        trainer,
        tokenizer,
        output_dir,
        {"base_model": cfg.base_model, "parent_adapter": str(previous_adapter or "")},
    )

    metrics: dict[str, Any] = {
        "heldout_loss": final_eval.get("eval_loss"),
        "heldout_reward_accuracy": final_eval.get("eval_rewards/accuracies"),
        "heldout_reward_margin": final_eval.get("eval_rewards/margins"),
        "heldout_pairs": len(split.heldout),
        "heldout_prompts": len(split.heldout_prompts),
        "train_pairs": len(split.train),
        "weighted_pairs": weighted,
        "train_loss": train_output.training_loss,
        **schedule_metrics(trainer),
        "seconds": round(time.perf_counter() - started, 3),
        "processes": world,
    }
    return DPOTrainResult(metrics, split.heldout, list(trainer.state.log_history))
