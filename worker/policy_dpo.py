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
(TRL's configs default to bf16 and refuse it on CPU). Several GPUs:
`accelerate launch --multi_gpu --num_processes N script.py` (or `torchrun --nproc_per_node N script.py`;
checked with 2 CPU processes) for the script calling `train_dpo`; the Trainer shards the pairs, only the
main process writes the output directory and calls the progress callback.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback
from trl import DPOTrainer

from app.conversation import PromptLike, flatten, to_messages
from worker.data import (
    PreferencePair,
    ProgressCallback,
    Split,
    WorkMeter,
    length_buckets,
    report_eta,
    split_by_prompt,
)
from worker.generation import CandidateConfig, generate_candidates
from worker.lora_policy import POLICY_CONFIG_FILE as POLICY_CONFIG_FILE  # re-exported for older callers
from worker.lora_policy import (
    MeteredTrainerMixin,
    cap_prompt,
    early_stopping_args,
    policy_model,
    save_policy,
    schedule_metrics,
    trainer_callbacks,
)
from worker.models import (
    DEFAULT_MODEL_NAME,
    format_exchange,
    format_prompt,
    load_tokenizer,
    pick_device,
    resolve_model_path,
)
from worker.reward_scoring import RewardModel
from worker.weighting import WeightedForward, normalised_weights, with_weights


@dataclass
class DPOTrainConfig:
    base_model: str = DEFAULT_MODEL_NAME  # the default name, an HF model id or a local path
    beta: float = 0.1  # strength of the pull towards the reference; higher keeps the policy closer
    lr: float = 5e-5  # AdamW learning rate (TRL's 1e-6 default suits full fine-tuning, not LoRA)
    epochs: float = 1.0  # passes over the training pairs, fractions allowed (early stopping may end sooner)
    max_steps: int = 0  # cap on optimizer updates; 0: the epochs decide
    batch_size: int = 4  # pairs per device per step
    grad_accum: int = 1  # steps accumulated per optimizer update
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup_ratio: float = 0.1  # share of the updates with a linearly rising learning rate
    lora_r: int = 16  # LoRA rank (fresh adapters only, see module docstring)
    lora_alpha: int = 32  # LoRA scaling numerator (effective scale alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch input
    # Module names to adapt, or "all-linear"; None: PEFT's per-architecture default (e.g. q/v projections).
    lora_target_modules: list[str] | str | None = None
    lora_top_layers: float = 1.0  # share of the layers, from the top, that get a fresh LoRA; 1: all
    max_length: int = 1024  # prompt + reply tokens; TRL truncates the end of longer pairs
    max_prompt_length: int | None = None  # prompts longer than this lose their beginning first; None: no cap
    seed: int = 0  # seeds the held-out split, LoRA initialisation and data order
    heldout_fraction: float = 0.1  # share of PROMPTS (not pairs) kept out of training for validation
    patience: int = 2  # evaluations without held-out DPO-loss improvement before stopping
    eval_every: int | None = None  # updates between evaluations; None: about 5 evaluations per run
    logging_steps: int = 1  # updates between progress callbacks
    gradient_checkpointing: bool = False  # saves activation memory at ~20% more compute; for large models
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def schedule(total_updates: int, warmup_ratio: float, eval_every: int | None) -> tuple[int, int]:
    """(warm-up updates, updates between evaluations) for a run of `total_updates` updates.

    About four evaluations per run, but never one before warm-up has ended: a linear warm-up runs its first
    update at learning rate 0, so an evaluation there scores the reference itself, and on a short run with a
    noisy held-out set early stopping could keep that untrained checkpoint (seen: a 3-update round that
    published an all-zero adapter). An explicit `eval_every` is taken as given.
    """
    # At least one update after the warm-up, so a run of a single update is not all spent at rate 0.
    warmup = min(math.ceil(warmup_ratio * total_updates), max(0, total_updates - 1))
    if eval_every:
        return warmup, eval_every
    return warmup, min(total_updates, max(1, total_updates // 4, warmup + 1))


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
    per_update = sum(step_tokens) / max(1, len(step_tokens)) * cfg.grad_accum * world
    ref = sum(padded(ordered, 2 * cfg.batch_size)) + (sum(padded(held, 2 * cfg.batch_size)) if held else 0)
    return WorkMeter(ref + 3 * per_update * total_updates + eval_tokens * n_evals)


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
    from datasets import Dataset
    from trl import DPOConfig

    started = time.perf_counter()
    spec = pick_device(cfg.device)
    output_dir = Path(output_dir)

    # Data: whole prompts held out, so the held-out loss measures generalisation to new prompts.
    split = split_by_prompt(list(pairs), cfg.heldout_fraction, cfg.seed)
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
    order = [i for batch in length_buckets(lengths, cfg.batch_size, cfg.seed) for i in batch]
    world = PartialState().num_processes
    per_update = cfg.batch_size * cfg.grad_accum * world
    epochs = cfg.epochs
    if cfg.max_steps > 0 and cfg.max_steps * per_update < len(order) * cfg.epochs:
        # Fewer updates than the data: train on the pairs those updates reach (whole batches of the seeded
        # random order, so a random sample of the pairs), and compute reference log-probabilities only for
        # them.
        order = order[: cfg.max_steps * per_update]
        epochs = 1.0
    train_ds = Dataset.from_list(_to_records([split.train[i] for i in order], conversational, weighted))
    eval_ds = Dataset.from_list(_to_records(split.heldout, conversational)) if split.heldout else None

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
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        weight_decay=cfg.weight_decay,
        warmup_steps=warmup_steps,
        lr_scheduler_type="linear",
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy="sequential",
        # The reference policy is frozen: its log-probabilities are computed once per round, before the
        # first step, and reused by every step and every evaluation (no second forward pass per step).
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=2 * cfg.batch_size,
        # bf16 only where the GPU supports it; TRL would otherwise turn it on and fail on CPU.
        bf16=spec.use_bf16,
        use_cpu=spec.device.type == "cpu",
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        report_to="none",
        disable_tqdm=True,
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
    }
    return DPOTrainResult(metrics, split.heldout, list(trainer.state.log_history))


@torch.inference_mode()
def completion_logprobs(
    model: Any, tokenizer: Any, prompts: Sequence[PromptLike], completions: Sequence[str]
) -> list[float]:
    """Sum of the policy's log-probabilities of each completion's tokens given its prompt (chat-formatted).

    The completion's tokens are the ones after the rendered prompt, end-of-turn tokens included, which is
    what DPO trains on.
    """
    device = next(model.parameters()).device
    out: list[float] = []
    for prompt, completion in zip(prompts, completions, strict=True):
        add_special = not getattr(tokenizer, "chat_template", None)
        prompt_ids = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=add_special)["input_ids"]
        full_ids = tokenizer(format_exchange(tokenizer, prompt, completion), add_special_tokens=add_special)[
            "input_ids"
        ]
        ids = torch.tensor([full_ids], device=device)
        logits = model(input_ids=ids).logits[0, :-1].float()
        token_logprobs = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
        out.append(float(token_logprobs[len(prompt_ids) - 1 :].sum()))
    return out


def reward_labelled_pairs(
    policy: Any,
    tokenizer: Any,
    reward_model: RewardModel,
    prompts: Sequence[PromptLike],
    cfg: CandidateConfig,
    *,
    min_gap: float = 0.0,
) -> list[PreferencePair]:
    """Synthetic preferences: sample `cfg.k` replies per prompt from the policy, keep best vs worst by reward.

    Prompts with fewer than two distinct replies, or a best-worst score gap not above `min_gap`, give no pair.
    """
    generated = generate_candidates(policy, tokenizer, prompts, cfg)
    pairs: list[PreferencePair] = []
    for prompt, candidates in zip(prompts, generated.candidates, strict=True):
        if len(candidates) < 2:
            continue
        scores = reward_model.score(prompt, [c.text for c in candidates])
        best = max(range(len(scores)), key=scores.__getitem__)
        worst = min(range(len(scores)), key=scores.__getitem__)
        if scores[best] - scores[worst] > min_gap:
            pairs.append(PreferencePair(prompt, candidates[best].text, candidates[worst].text))
    return pairs
