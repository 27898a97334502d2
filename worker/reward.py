"""Reward model: a scalar head on a language-model backbone, LoRA-tuned on K-wise rankings (InstructGPT).

The backbone is any HF model `AutoModelForSequenceClassification` can load with `num_labels=1` (by default
the policy's base model). Its transformer gets LoRA adapters; the new linear head (`score`) is trained fully
and saved with the adapter (PEFT's SEQ_CLS task puts it in `modules_to_save`). The score of a reply is the
head's output at the last non-pad token of "prompt + reply" rendered with the chat template. (When the pad
token is also the end-of-sequence token, as in SmolLM2, a trailing end token counts as padding and the score
is read just before it; that depends only on the text, never on the batch, because inputs are right-padded.)

Loss (InstructGPT, Ouyang et al. 2022): a ranking of K candidates is one batch of K forward passes; the K
scores give every ordered pair the tiers imply, and the ranking's loss is the mean over those pairs of
-log sigmoid(r_chosen - r_rejected - margin). Ties and all-bad rankings give no pair. Scoring each candidate
once (K passes) instead of twice per pair (K(K-1) passes) gives the same loss and gradients for K-1 times
less compute, and keeps all pairs of a ranking in one step, which the paper found reduces overfitting.

Scoring (token ids, batches, `RewardModel`) lives in worker/reward_scoring.py; this module trains. With LoRA
on the top layers only, the frozen layers below run once per sequence (worker/frozen_prefix.py): the first
epoch and the first evaluation store what enters the lowest adapted layer, later ones start there.

Training holds out whole prompts, evaluates held-out pairwise accuracy and loss, and stops early when the
held-out loss stops improving; the best adapter is the one saved.

Several GPUs: `worker.launch.run_stage("reward", ..., processes=N)` (what `rankloop worker --gpus N` does)
runs this function under torchrun. Every process walks the same seeded batches and trains on its share of
each (`batch_size` is the global batch), gradients are averaged by DDP through `accelerate.Accelerator`,
and the step's loss is reduced over the processes, so N processes take the same steps as one (tested with
2 CPU processes on gloo). Every process evaluates the (small) held-out set itself, so early-stopping
decisions agree; only the main process writes the output directory and calls the progress callback.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from worker.data import (
    BestCheckpoint,
    BucketBatchSampler,
    PreferencePair,
    ProgressCallback,
    Ranking,
    WorkMeter,
    ranking_to_pairs,
    report_eta,
    split_by_prompt,
)
from worker.frozen_prefix import BYTES_PER_MB, FrozenPrefix
from worker.models import (
    DEFAULT_MODEL_NAME,
    DeviceSpec,
    load_tokenizer,
    lora_layers,
    pick_device,
    resolve_model_path,
)
from worker.reward_scoring import RewardModel, encode_exchanges, score_ids, score_texts
from worker.weighting import weighted_mean

REWARD_CONFIG_FILE = "reward_model.json"


@dataclass
class RewardConfig:
    base_model: str = DEFAULT_MODEL_NAME  # backbone: the default name, an HF model id or a local path
    lr: float = 1e-4  # AdamW learning rate, constant (early stopping ends training, not a schedule)
    epochs: float = (
        3.0  # passes over the training rankings, fractions allowed (early stopping may end sooner)
    )
    max_steps: int = 0  # cap on optimizer steps; 0: the epochs decide
    batch_size: int = 4  # rankings per optimizer step; all their candidates go through in one batch
    weight_decay: float = 0.0  # AdamW decoupled weight decay on the LoRA and head weights
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator (effective scale alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch input
    # Module names to adapt, or "all-linear"; None: PEFT's per-architecture default (e.g. q/v projections).
    lora_target_modules: list[str] | str | None = None
    lora_top_layers: float = 1.0  # share of the transformer layers, from the top, that get LoRA; 1: all
    max_length: int = (
        512  # tokens per prompt+reply; longer ones lose their beginning (the score reads the end)
    )
    margin_scale: float = 0.0  # margin = margin_scale * tier distance; 0 is the plain InstructGPT loss
    grad_clip: float = 1.0  # max gradient norm; small reward models spike early without it
    seed: int = 0  # seeds the held-out split, the shuffling, the head and LoRA initialisation
    heldout_fraction: float = 0.2  # share of PROMPTS (not pairs) kept out of training for validation
    min_heldout_prompts: int = 1  # a held-out share under this many prompts is not held out (no selection)
    patience: int = 2  # evaluations without held-out loss improvement before stopping
    eval_every: int | None = None  # optimizer steps between evaluations; None: once per epoch
    eval_batch_size: int = 16  # sequences per forward pass when evaluating
    prefix_cache_mb: int = (
        2048  # CPU memory for the frozen layers' cached activations (frozen_prefix); 0: off
    )
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairwiseEval:
    accuracy: float  # share of pairs where the chosen reply scored strictly higher (NaN when count is 0)
    loss: float  # mean -log sigmoid(r_chosen - r_rejected) over pairs, no margin (NaN when count is 0)
    count: int  # number of pairs evaluated


@dataclass
class RewardTrainResult:
    metrics: dict[str, Any]  # JSON-ready: held-out accuracy/loss, steps, timing, split sizes
    heldout_pairs: list[PreferencePair]  # to evaluate the previous reward model on the same data
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per evaluation


# --- the loss -------------------------------------------------------------------------------------------


def ranking_loss(
    scores: torch.Tensor, ranking: Ranking, margin_scale: float = 0.0
) -> tuple[torch.Tensor, int]:
    """Mean pairwise loss of one ranking from its K scores (one per candidate); returns (loss, pair count).

    A ranking without pairs returns a zero that is still connected to the scores, so a distributed backward
    pass sees the same parameters used on every process.
    """
    pairs = ranking.pairs()
    if not pairs:
        return scores.sum() * 0.0, 0
    chosen = torch.tensor([p.chosen for p in pairs], device=scores.device)
    rejected = torch.tensor([p.rejected for p in pairs], device=scores.device)
    margin = margin_scale * torch.tensor([float(p.margin) for p in pairs], device=scores.device)
    diff = scores[chosen].float() - scores[rejected].float() - margin
    return -F.logsigmoid(diff).mean(), len(pairs)


def naive_pairwise_loss(model: Any, tokenizer: Any, ranking: Ranking, cfg: RewardConfig) -> torch.Tensor:
    """Reference for tests: the same loss with two forward passes per pair (C(K,2) pairs, 2 passes each)."""
    losses = []
    for p in ranking.pairs():
        r_w = score_texts(model, tokenizer, ranking.prompt, [ranking.candidates[p.chosen]], cfg.max_length)
        r_l = score_texts(model, tokenizer, ranking.prompt, [ranking.candidates[p.rejected]], cfg.max_length)
        losses.append(-F.logsigmoid(r_w[0].float() - r_l[0].float() - cfg.margin_scale * p.margin))
    return torch.stack(losses).mean()


def _load_backbone(path: str, dtype: torch.dtype) -> Any:
    """The backbone with a new scalar head, minus transformers' warning that the head is new (it must be)."""
    import logging

    from transformers import AutoModelForSequenceClassification

    loader_log = logging.getLogger("transformers.modeling_utils")
    level = loader_log.level
    loader_log.setLevel(logging.ERROR)
    try:
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    finally:
        loader_log.setLevel(level)


def build_reward_model(path: str, tokenizer: Any, cfg: RewardConfig) -> Any:
    """Backbone with a fresh scalar head and LoRA adapters, ready to train (fp32)."""
    from peft import LoraConfig, TaskType, get_peft_model

    # fp32 master weights; on a GPU, accelerate's bf16 autocast does the fast part.
    backbone = _load_backbone(path, torch.float32)
    # The head reads the last token that is not padding; the model must know which id that is.
    backbone.config.pad_token_id = tokenizer.pad_token_id
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        **{
            "target_modules": cfg.lora_target_modules,
            **lora_layers(backbone, cfg.lora_top_layers, cfg.lora_target_modules),
        },
    )
    return get_peft_model(backbone, lora)


def load_reward_model(
    model_dir: Path, *, data_dir: Path | None = None, device: DeviceSpec | None = None
) -> RewardModel:
    """Backbone + saved adapter and head, from a directory written by `train_reward_model`."""
    from peft import PeftModel

    device = device or pick_device()
    meta = json.loads((Path(model_dir) / REWARD_CONFIG_FILE).read_text())
    path = resolve_model_path(meta["base_model"], data_dir)
    tokenizer = load_tokenizer(str(model_dir), padding_side="right")
    # The head comes from the adapter directory (modules_to_save).
    backbone = _load_backbone(path, device.dtype)
    backbone.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(backbone, str(model_dir))
    model.to(device.device)
    model.eval()
    return RewardModel(model, tokenizer, int(meta["max_length"]))


def evaluate_reward_model(
    model: Path | RewardModel,
    pairs: Sequence[PreferencePair],
    *,
    data_dir: Path | None = None,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> PairwiseEval:
    """Pairwise accuracy (and loss) of a reward model on these pairs (each distinct reply scored once)."""
    rm = model if isinstance(model, RewardModel) else load_reward_model(model, data_dir=data_dir)
    if not pairs:
        return PairwiseEval(math.nan, math.nan, 0)
    was_training = rm.model.training
    rm.model.eval()
    exchanges = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
    scores = torch.tensor(rm.score_exchanges(exchanges, batch_size, on_batch))
    rm.model.train(was_training)
    diff = scores[: len(pairs)] - scores[len(pairs) :]
    return PairwiseEval(
        accuracy=float((diff > 0).float().mean()),
        loss=float(-F.logsigmoid(diff).mean()),
        count=len(pairs),
    )


# --- training -------------------------------------------------------------------------------------------


def _shard(indices: list[int], rank: int, world: int) -> tuple[list[int], float]:
    """This process's share of a global batch, and its weight (1; 0 for a stand-in when the batch is smaller
    than the process count: every process must run a forward and backward pass for the all-reduce)."""
    mine = indices[rank::world]
    return (mine, 1.0) if mine else (indices[:1], 0.0)


def train_reward_model(
    cfg: RewardConfig,
    rankings: Sequence[Ranking],
    output_dir: Path,
    *,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> RewardTrainResult:
    """Train LoRA + head on these rankings, keep the best held-out checkpoint and save it to `output_dir`."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    started = time.perf_counter()
    spec = pick_device(cfg.device)
    accelerator = Accelerator(
        mixed_precision="bf16" if spec.use_bf16 else "no", cpu=spec.device.type == "cpu"
    )
    set_seed(cfg.seed)

    # Data: held-out prompts first, then drop rankings that teach nothing (ties only, all bad).
    split = split_by_prompt(list(rankings), cfg.heldout_fraction, cfg.seed, cfg.min_heldout_prompts)
    # Annotator weight 0 (weighting found them unreliable) adds nothing to the loss: not even a pass.
    train = [r for r in split.train if r.pairs() and r.weight > 0]
    heldout_pairs = ranking_to_pairs(split.heldout)
    if not train:
        raise ValueError("no training pairs: every ranking is a full tie or all-bad, or all were held out")

    # Model: backbone + LoRA + scalar head.
    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    model = build_reward_model(path, tokenizer, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Tokenised once; a step's rankings have similar lengths, so their batch is padded little.
    train_ids = [
        encode_exchanges(tokenizer, [(r.prompt, c) for c in r.candidates], cfg.max_length) for r in train
    ]
    longest = [max(len(x) for x in ids) for ids in train_ids]
    sampler = BucketBatchSampler(longest, cfg.batch_size, cfg.seed)
    # Every process walks the same seeded batches and trains on its share of each (`_shard`): the batch
    # size is the global one, so N processes take the steps one process would.
    model, optimizer = accelerator.prepare(model, optimizer)
    rank, world = accelerator.process_index, accelerator.num_processes
    # The frozen bottom layers run once per sequence (worker/frozen_prefix.py); one process only (under DDP
    # every pass is whole, as before).
    prefix = (
        FrozenPrefix.attach(accelerator.unwrap_model(model), cfg.prefix_cache_mb * BYTES_PER_MB)
        if world == 1
        else None
    )
    steps_per_epoch = len(sampler)
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps)
    eval_every = cfg.eval_every or steps_per_epoch

    # The ETA counts tokens: a forward pass is 1 unit per padded token, forward + backward 3.
    step_units = 3 * sum(
        max(longest[i] for i in b) * sum(len(train[i].candidates) for i in b) for b in sampler
    )
    sampler.epoch = 0  # that pass only measured; training starts again at the first epoch's order
    eval_rm = RewardModel(accelerator.unwrap_model(model), tokenizer, cfg.max_length, prefix)
    eval_exchanges = [(p.prompt, p.chosen) for p in heldout_pairs] + [
        (p.prompt, p.rejected) for p in heldout_pairs
    ]
    eval_units = eval_rm.eval_tokens(eval_exchanges, cfg.eval_batch_size) if heldout_pairs else 0
    n_evals = (1 + total_steps // eval_every) if heldout_pairs else 0
    meter = WorkMeter(step_units / max(1, len(sampler)) * total_steps + eval_units * n_evals)
    step = 0
    report_eta(progress, 0, total_steps, None)

    def on_eval_batch(tokens: int) -> None:
        meter.add(tokens)
        if accelerator.is_main_process:
            report_eta(progress, step, total_steps, meter.eta())

    def evaluate() -> PairwiseEval:
        with accelerator.autocast():
            result = evaluate_reward_model(
                eval_rm, heldout_pairs, batch_size=cfg.eval_batch_size, on_batch=on_eval_batch
            )
        model.train()
        return result

    def trainable_state() -> dict[str, torch.Tensor]:
        unwrapped = accelerator.unwrap_model(model)
        return {
            n: p.detach().to("cpu", copy=True) for n, p in unwrapped.named_parameters() if p.requires_grad
        }

    # Held-out score of the untrained head: the baseline the metrics report. It is not a checkpoint to
    # keep: a random head ranks by noise, and on a small held-out set it often has the lowest loss only
    # because it is unconfident (rounds once published the untrained head, same ranking every round).
    initial = evaluate() if heldout_pairs else None
    best: BestCheckpoint[PairwiseEval] = BestCheckpoint(cfg.patience, trainable_state())
    history: list[dict[str, float]] = []
    if initial:
        history.append({"step": 0, "heldout_loss": initial.loss, "heldout_accuracy": initial.accuracy})
    stopped_early, last_loss = False, math.nan

    model.train()
    # Time in training steps only (no setup, evaluation or saving): what throughput comparisons divide by.
    loop_started, eval_seconds = time.perf_counter(), 0.0
    while step < total_steps and not stopped_early:
        for indices in sampler:
            # One forward pass over all candidates of this process's rankings, then split the scores.
            mine, weight = _shard(indices, rank, world)
            batch = [train[i] for i in mine]
            flat = [ids for i in mine for ids in train_ids[i]]
            with accelerator.autocast():
                scores = score_ids(model, tokenizer, flat, prefix)
            losses, offset = [], 0
            for r in batch:
                loss_r, _n = ranking_loss(scores[offset : offset + len(r.candidates)], r, cfg.margin_scale)
                offset += len(r.candidates)
                losses.append(loss_r)
            # Every ranking weighs the same whatever its K (InstructGPT's 1/C(K,2) normalisation), times its
            # annotator's weight (all 1 without annotator weighting): the step's loss is the weighted mean
            # over the global batch. DDP averages gradients over the processes, hence the factor `world`.
            total_weight = sum(train[i].weight for i in indices)
            share = weighted_mean(torch.stack(losses), [r.weight * weight for r in batch], total_weight)
            loss = share * world
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            step += 1
            last_loss = float(accelerator.reduce(share.detach(), "sum"))
            meter.add(3 * sum(len(train[i].candidates) for i in indices) * max(longest[i] for i in indices))
            if progress is not None and accelerator.is_main_process:
                progress(step, total_steps, last_loss)
                report_eta(progress, step, total_steps, meter.eta())

            if heldout_pairs and step % eval_every == 0:
                eval_started = time.perf_counter()
                current = evaluate()
                eval_seconds += time.perf_counter() - eval_started
                history.append(
                    {"step": step, "heldout_loss": current.loss, "heldout_accuracy": current.accuracy}
                )
                stopped_early = best.observe(step, current, trainable_state)
            if stopped_early or step >= total_steps:
                break

    train_seconds = time.perf_counter() - loop_started - eval_seconds

    # Keep the best checkpoint (without held-out data: the last one).
    unwrapped = accelerator.unwrap_model(model)
    if heldout_pairs:
        unwrapped.load_state_dict(best.state, strict=False)
    best_eval, best_step = best.evaluation, best.step if heldout_pairs else step

    metrics: dict[str, Any] = {
        "heldout_accuracy": best_eval.accuracy if best_eval else None,
        "heldout_loss": best_eval.loss if best_eval else None,
        "heldout_pairs": len(heldout_pairs),
        "heldout_prompts": len(split.heldout_prompts),
        "initial_heldout_accuracy": initial.accuracy if initial else None,
        "initial_heldout_loss": initial.loss if initial else None,
        "train_rankings": len(train),
        "train_pairs": sum(len(r.pairs()) for r in train),
        "zero_weight_rankings": sum(1 for r in split.train if r.pairs() and r.weight <= 0),
        "steps": step,
        "total_steps": total_steps,
        "best_step": best_step,
        "stopped_early": stopped_early,
        "last_train_loss": last_loss,
        "seconds": round(time.perf_counter() - started, 3),
        "train_seconds": round(train_seconds, 3),
        "device": str(accelerator.device),
        "processes": world,
        **(prefix.metrics() if prefix else {"prefix_layers": 0}),
    }
    if accelerator.is_main_process:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        unwrapped.save_pretrained(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
        meta = {"base_model": cfg.base_model, "max_length": cfg.max_length, "kind": "reward"}
        (output_dir / REWARD_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    accelerator.wait_for_everyone()
    return RewardTrainResult(metrics=metrics, heldout_pairs=heldout_pairs, history=history)
