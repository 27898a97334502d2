"""What the online policy trainers (worker/policy_rloo.py, worker/policy_grpo.py) share.

Both are TRL trainers of one family: for each training prompt the policy samples `num_generations` replies,
the round's new reward model scores them, and each reply's advantage is its reward measured against the
other replies to the same prompt (RLOO: minus the others' mean; GRPO: minus the group mean, divided by the
group's standard deviation, with a clipped importance ratio). A KL penalty (`beta`) keeps the policy near
its starting point.

The policy is a LoRA adapter like the DPO one (same directory layout, worker/lora_policy.py), continued from
the previous policy's adapter when there is one. With a PEFT model TRL computes the KL reference by
disabling the adapter, so the anchor is the base model rather than the previous policy; `beta` is small
for that reason.

Whole prompts are held out. Evaluating means what TRL's trainers do with an eval set: sample replies to the
held-out prompts with the current policy and average their reward (`eval_reward`). Training stops when that
stops rising and ends on the best checkpoint. The replies are sampled, so the held-out reward is noisy;
`patience` is what absorbs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import PrinterCallback

from app.conversation import Message, PromptLike, as_prompt, flatten, to_messages
from worker.data import ProgressCallback, split_by_prompt
from worker.lora_policy import (
    PolicyTrainResult,
    cap_prompt,
    early_stopping_args,
    policy_model,
    run_args,
    save_policy,
    schedule_metrics,
    trainer_callbacks,
)
from worker.models import load_tokenizer, pick_device, resolve_model_path
from worker.reward_scoring import RewardModel


@dataclass
class OnlineTrainConfig:
    base_model: str  # the default name, an HF model id or a local path
    lr: float = 1e-5  # AdamW learning rate
    epochs: int = 1  # passes over the training prompts (early stopping may end sooner)
    prompts_per_step: int = 2  # distinct prompts per optimiser step
    num_generations: int = 4  # sampled replies per prompt; a group baseline needs >= 2
    beta: float = 0.05  # KL penalty towards the reference
    weight_decay: float = 0.0  # AdamW decoupled weight decay on the LoRA weights
    max_prompt_length: int | None = 256  # prompts longer than this lose their beginning; None: no cap
    max_completion_length: int = 128  # tokens sampled per reply
    temperature: float = 0.8  # sampling temperature, in training and in evaluation
    top_p: float = 0.95  # nucleus sampling mass
    lora_r: int = 16  # LoRA rank; fresh adapters only, a continued adapter keeps its shape
    lora_alpha: int = 32  # LoRA scaling numerator (effective scale alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch input
    # Module names to adapt, or "all-linear"; None: PEFT's per-architecture default (e.g. q/v projections).
    lora_target_modules: list[str] | str | None = None
    lora_top_layers: float = 1.0  # share of the layers, from the top, that get a fresh LoRA; 1: all
    seed: int = 0  # seeds the held-out split, LoRA initialisation, prompt order and sampling
    heldout_fraction: float = 0.1  # share of prompts kept out of training; fewer than 2 prompts: none
    patience: int = 2  # evaluations without a higher held-out mean reward before stopping
    min_heldout_prompts: int = 1  # a held-out share under this many prompts is not held out (no selection)
    eval_every: int | None = None  # updates between evaluations; None: about 5 evaluations per run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trainer_args(self) -> dict[str, Any]:
        """The method's own TRL config arguments beyond the common ones (none here)."""
        return {}


@dataclass(frozen=True)
class _Prompt:
    prompt: PromptLike  # split_by_prompt groups by this attribute


def prompt_of(value: Any) -> PromptLike:
    """The prompt TRL hands the reward function back: the whole conversation (a message list), or a text."""
    if isinstance(value, list):
        return as_prompt(tuple(Message(str(m["role"]), str(m["content"])) for m in value))
    return str(value)


def _content(message: Any) -> str:
    # Conversational datasets hand over the reply as a message list; plain ones as a string.
    if isinstance(message, list):
        return str(message[-1]["content"]) if message else ""
    return str(message)


def train_online(
    method: str,
    trl_classes: tuple[type, type],
    cfg: OnlineTrainConfig,
    prompts: Sequence[PromptLike],
    reward_model: RewardModel,
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> PolicyTrainResult:
    """Train (or continue) a LoRA policy with TRL's (config class, trainer class) against the reward model;
    the best held-out one is saved and its metrics say `method`."""
    from accelerate import PartialState
    from datasets import Dataset

    config_class, trainer_class = trl_classes
    if not prompts:
        raise ValueError("no prompts to optimise the policy on")
    started = time.perf_counter()
    spec = pick_device()
    output_dir = Path(output_dir)

    # Data: held-out prompts are only ever sampled for evaluation, never trained on.
    split = split_by_prompt(
        [_Prompt(p) for p in dict.fromkeys(prompts)], cfg.heldout_fraction, cfg.seed, cfg.min_heldout_prompts
    )
    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="left")
    conversational = bool(getattr(tokenizer, "chat_template", None))

    def records(items: Sequence[_Prompt]) -> list[dict[str, Any]]:
        # TRL's online trainers do not truncate prompts; cutting the beginning keeps the question at the end.
        capped = [cap_prompt(tokenizer, p.prompt, cfg.max_prompt_length) for p in items]
        return [{"prompt": to_messages(p) if conversational else flatten(p)} for p in capped]

    train_ds = Dataset.from_list(records(split.train))
    eval_ds = Dataset.from_list(records(split.heldout)) if split.heldout else None

    def reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float | None]:
        exchanges = [(prompt_of(p), _content(c)) for p, c in zip(prompts, completions, strict=True)]
        return list(reward_model.score_exchanges(exchanges))

    # TRL names the logged reward columns after the function.
    reward.__name__ = "reward_model"

    # Schedule: TRL drops an epoch's last incomplete group of prompts, so fewer training prompts than a
    # step takes would train nothing at all: the step shrinks to what there is. Evaluate a handful of times.
    world = PartialState().num_processes
    if len(split.train) < world:
        raise ValueError(f"{method} needs at least {world} training prompt(s), has {len(split.train)}")
    per_step = min(cfg.prompts_per_step, len(split.train) // world)
    updates_per_epoch = max(1, len(split.train) // (per_step * world))
    eval_every = cfg.eval_every or max(1, updates_per_epoch * cfg.epochs // 5)

    # Model: the previous policy's adapter, trainable, or a fresh LoRA.
    model, peft_config = policy_model(path, previous_adapter, cfg)
    batch = per_step * cfg.num_generations
    args = config_class(
        output_dir=str(output_dir / ".checkpoints"),
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=batch,
        # Whole groups of one prompt's replies per evaluation batch, as TRL requires.
        per_device_eval_batch_size=batch,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        weight_decay=cfg.weight_decay,
        logging_steps=1,
        # The trainers' log() adds their averaged eval metrics (eval_reward among them) to the dict that the
        # Trainer then hands to the early-stopping callback and the best-checkpoint choice.
        **run_args(spec, cfg.seed),
        **early_stopping_args(eval_ds is not None, eval_every, "eval_reward", greater_is_better=True),
        **cfg.trainer_args(),
    )
    trainer = trainer_class(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=trainer_callbacks(
            progress, cfg.patience if eval_ds is not None else None, progress_keys=("loss", "reward")
        ),
    )
    # With tqdm off the Trainer prints every log dict to stdout; progress goes through our callback instead.
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    save_policy(trainer, tokenizer, output_dir, {"base_model": cfg.base_model, "method": method})

    rewards = [e["reward"] for e in trainer.state.log_history if e.get("reward") is not None]
    loss = result.training_loss
    return PolicyTrainResult(
        {
            "method": method,
            "prompts": len(split.train) + len(split.heldout),
            "train_prompts": len(split.train),
            "prompts_per_step": per_step,
            "heldout_prompts": len(split.heldout),
            # The best evaluation's mean reward: the adapter saved is that checkpoint.
            "heldout_reward": trainer.state.best_metric if eval_ds is not None else None,
            "train_loss": None if loss is None or math.isnan(loss) else loss,
            "first_mean_reward": rewards[0] if rewards else None,
            "last_mean_reward": rewards[-1] if rewards else None,
            **schedule_metrics(trainer),
            "seconds": round(time.perf_counter() - started, 3),
        },
        list(trainer.state.log_history),
    )
