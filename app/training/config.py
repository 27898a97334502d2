"""A training round's configuration: every knob with its default, its meaning and its allowed range.

A round stores its fully resolved config (defaults + overrides) on its row, so it can be re-run exactly.
Overrides come from the API (`POST /api/v1/rounds` JSON body) or the CLI (`rankloop round --set key=value`);
`RoundConfig.resolve` checks every key and value before anything is queued, and the worker checks again
when it starts the round, so a bad config fails at once with a message naming the key.

Part of the training contract (app/training), import-light on purpose: the web app validates overrides
with it, the worker reads a round's stored config with it (once per round).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings, get_settings

# ConfigError is raised here and imported from here by the app and the worker.
from app.training.config_values import ConfigError, check_value, module_names

# The most candidates a comparison set may hold: sets larger than app.annotation.tiers.MAX_CANDIDATES are
# never handed out (a test keeps the two equal; the training contract does not import the annotation code).
MAX_SET_SIZE = 9


def _opt(
    default: Any,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple = (),
    check: Callable[[str, Any], Any] | None = None,
):
    # `check(name, value)` returns the value to store (normalised) or raises ConfigError naming the key.
    return field(
        default=default, metadata={"help": help, "lo": lo, "hi": hi, "choices": choices, "check": check}
    )


@dataclass(frozen=True)
class RoundConfig:
    # --- model and reproducibility
    base_model: str = _opt("", "HF id or local path of the base model; empty = the base_model setting")
    seed: int = _opt(0, "seeds the held-out split, training and sampling", lo=0, hi=2**31 - 1)
    device: str = _opt(
        "auto",
        "where to train: auto (CUDA when present), cuda (the round fails at once without a GPU) or cpu "
        "(hides GPUs from this worker process from then on: the device is fixed once a process used it)",
        choices=("auto", "cpu", "cuda"),
    )

    # --- 1. snapshot
    multi_annotator: str = _opt(
        "each",
        "several rankings of one set: 'each' trains on every ranking (disagreements weigh against each "
        "other in the loss), 'consensus' merges them into one ranking by mean rank (Borda)",
        choices=("each", "consensus"),
    )
    annotator_weight: str = _opt(
        "none",
        "how much each annotator's rankings count in the reward model and policy losses: 'none' (all "
        "the same), 'gold' (from their accuracy a on gold sets) or 'agreement' (from their agreement a with "
        "the consensus of others); weight max(0, 2a - 1), so chance-level or reversed rankers weigh 0 and "
        "annotators without figures 1. The weights in force are stored in the round's metrics",
        choices=("none", "gold", "agreement"),
    )
    max_rankings: int = _opt(0, "use at most the newest N rankings; 0 = all", lo=0, hi=10_000_000)
    heldout_fraction: float = _opt(
        0.2, "share of prompts held out for evaluation (whole prompts, never single pairs)", lo=0.0, hi=0.9
    )

    # --- optional SFT
    sft: str = _opt(
        "auto",
        "supervised fine-tuning on demonstrations and first-ranked human replies: auto (when there are "
        "any), on, off",
        choices=("auto", "on", "off"),
    )
    sft_epochs: int = _opt(1, "SFT passes over the demonstrations", lo=1, hi=100)
    sft_learning_rate: float = _opt(2e-4, "SFT LoRA learning rate", lo=0.0, hi=1.0)
    # SFT's held-out share, patience and weight decay are the policy_* ones below.

    # --- 2. reward model
    reward_epochs: int = _opt(
        1, "reward model passes over the training rankings (early stopping may end sooner)", lo=1, hi=1000
    )
    reward_patience: int = _opt(
        2, "held-out evaluations without improvement before reward training stops", lo=1, hi=100
    )
    reward_min_heldout_prompts: int = _opt(
        8,
        "the reward model holds prompts out (and keeps its best checkpoint) only when the held-out share "
        "comes to at least this many prompts; fewer train on every ranking and keep the last update (a "
        "handful of held-out prompts is noise to select by)",
        lo=1,
        hi=100_000,
    )
    reward_learning_rate: float = _opt(5e-5, "reward model learning rate", lo=0.0, hi=1.0)
    reward_batch_size: int = _opt(4, "rankings per reward model step", lo=1, hi=1024)
    reward_weight_decay: float = _opt(
        0.0, "reward model AdamW weight decay (LoRA and score head)", lo=0.0, hi=1.0
    )
    reward_margin_scale: float = _opt(
        0.0,
        "reward model margin per tier of distance: the loss asks a reply k tiers better to score k times "
        "this much higher; 0 = the plain InstructGPT loss",
        lo=0.0,
        hi=10.0,
    )
    max_length: int = _opt(
        512,
        "token cap on prompt + reply when training (the reward model keeps the end, DPO and SFT the start); "
        "256 halves a step's cost on a CPU, but the measured round at 256 (with lora_top_layers=0.34) gave "
        "a reward model at 0.46 held-out accuracy against 0.61 at 512 with every layer (bench/RESULTS.md)",
        lo=16,
        hi=32768,
    )

    # --- 3. policy
    policy_method: str = _opt(
        "dpo",
        "policy optimisation: dpo (offline, on preference pairs), dpo_ranking (offline, the Plackett-Luce "
        "form of DPO on whole rankings: each candidate once per step instead of once per pair; "
        "policy_batch_size then counts rankings), rloo (online: samples scored by the new reward model, "
        "leave-one-out baseline) or grpo (online like rloo, group-normalised advantage and a clipped ratio; "
        "TRL's GRPOTrainer). README, 'Choosing the policy method'",
        choices=("dpo", "dpo_ranking", "rloo", "grpo"),
    )
    policy_epochs: int = _opt(
        1,
        "DPO passes over the preference pairs, RLOO and GRPO over the prompts (early stopping may end "
        "sooner)",
        lo=1,
        hi=1000,
    )
    policy_heldout_fraction: float = _opt(
        0.1,
        "share of the training prompts SFT, DPO, RLOO and GRPO each keep aside for early stopping (none with "
        "fewer than 2 prompts)",
        lo=0.0,
        hi=0.9,
    )
    policy_patience: int = _opt(
        2,
        "held-out evaluations without improvement before SFT, DPO, RLOO or GRPO stops (held-out loss; "
        "mean reward of sampled replies for RLOO and GRPO)",
        lo=1,
        hi=100,
    )
    policy_min_heldout_prompts: int = _opt(
        8,
        "SFT, DPO and RLOO hold prompts out (and keep their best checkpoint) only when the held-out share "
        "comes to at least this many prompts; fewer train on every prompt and keep the last update. A "
        "handful of held-out prompts is noise: a round once kept the untrained step 8 of 24 on 3 prompts",
        lo=1,
        hi=100_000,
    )
    policy_max_steps: int = _opt(
        32,
        "cap on SFT and DPO optimizer updates per round, each on a random share of the pairs; 0 = the "
        "epochs decide. 32 updates of 4 pairs keep a round on a 2-core CPU within minutes (a DPO update of a "
        "135M model there takes several seconds); raise it, or set 0, with a GPU",
        lo=0,
        hi=1_000_000,
    )
    policy_learning_rate: float = _opt(5e-5, "DPO, RLOO and GRPO LoRA learning rate", lo=0.0, hi=1.0)
    policy_batch_size: int = _opt(
        4,
        "preference pairs per DPO step, demonstrations per SFT step, samples per RLOO/GRPO step",
        lo=1,
        hi=1024,
    )
    policy_grad_accum: int = _opt(
        1,
        "dpo and dpo_ranking: batches of policy_batch_size accumulated per optimizer update; the same "
        "update with a fraction of the activation memory (a dpo_ranking step holds every candidate's "
        "logits over the vocabulary: 8 rankings of 4 replies at 256 tokens took the worker to 12 GB)",
        lo=1,
        hi=1024,
    )
    policy_weight_decay: float = _opt(
        0.0, "AdamW weight decay of the policy's LoRA weights (SFT, DPO, RLOO, GRPO)", lo=0.0, hi=1.0
    )
    dpo_beta: float = _opt(0.1, "DPO beta: how far the policy may move from the reference", lo=0.0, hi=10.0)
    rloo_generations: int = _opt(
        4, "rloo: replies sampled per prompt for the leave-one-out baseline", lo=2, hi=16
    )
    rloo_beta: float = _opt(0.05, "rloo: KL penalty towards the reference", lo=0.0, hi=10.0)
    grpo_generations: int = _opt(
        4, "grpo: replies sampled per prompt, the group its advantage is measured in", lo=2, hi=16
    )
    grpo_beta: float = _opt(
        0.05,
        "grpo: KL penalty towards the reference (the base model); TRL's own default 0 drops the guard "
        "against reward hacking a learned reward model needs",
        lo=0.0,
        hi=10.0,
    )
    grpo_scale_rewards: str = _opt(
        "group",
        "grpo: divide each advantage by its group's reward std (group, the paper's), the batch's (batch) "
        "or not at all (none, Dr. GRPO)",
        choices=("group", "batch", "none"),
    )
    lora_r: int = _opt(8, "LoRA rank of fresh adapters (reward model and first policy)", lo=1, hi=512)
    lora_alpha: int = _opt(16, "LoRA alpha (scale = alpha / r)", lo=1, hi=1024)
    lora_top_layers: float = _opt(
        1.0,
        "share of the transformer layers, counted from the top, that get fresh LoRA adapters (reward model, "
        "SFT, DPO, RLOO, GRPO); 1 = all. The layers below get no gradient, so the backward pass skips them: "
        "about 1.7x less compute per token with 0.34 (all-linear: the linear modules of those layers). "
        "Default all: see max_length for what the cheaper setting cost in held-out accuracy",
        lo=0.01,
        hi=1.0,
    )
    lora_dropout: float = _opt(0.05, "dropout on the LoRA branch input", lo=0.0, hi=0.9)
    lora_target_modules: str = _opt(
        "",
        "comma-separated names of the modules that get LoRA (e.g. q_proj,k_proj,v_proj,o_proj), or "
        "all-linear; empty = PEFT's default for the architecture. A policy continued from an earlier "
        "round keeps its adapter's shape (rank, alpha, dropout, targets)",
        check=module_names,
    )
    max_prompt_length: int = _opt(256, "token cap on the prompt part when training", lo=8, hi=32768)
    synthetic_prompts: int = _opt(
        16,
        "prompts without human rankings that get reward-model-labelled pairs (rankings for dpo_ranking); "
        "0 = none",
        lo=0,
        hi=100_000,
    )
    synthetic_samples: int = _opt(
        4,
        "fresh samples per such prompt; the best and worst by reward become a pair (dpo_ranking: all of "
        "them, ranked by reward)",
        lo=2,
        hi=16,
    )

    # --- 4. evaluation
    eval_prompts: int = _opt(
        16, "held-out prompts for the new-vs-previous policy win-rate; 0 = skip", lo=0, hi=100_000
    )

    # --- 5. publish
    auto_promote: str = _opt(
        "setting",
        "make the new policy active at once: yes, no, or 'setting' (the auto_promote setting)",
        choices=("setting", "yes", "no"),
    )

    # --- 6. generate
    k: int = _opt(4, "candidates per new comparison set", lo=2, hi=9)
    new_policy_share: float = _opt(
        0.5,
        "share of each set's candidates from the new policy; the rest come from the active one, so "
        "annotators compare both in the same set",
        lo=0.0,
        hi=1.0,
    )
    generate_prompts: int = _opt(32, "prompts that get a new comparison set; 0 = none", lo=0, hi=100_000)
    selection: str = _opt(
        "random",
        "which prompts get new sets and which are handed out first: random (the prompts that need work "
        "most, the usual hand-out order) or uncertainty (candidates for selection_pool times as many "
        "prompts, the sets the newest reward model is least sure how to rank kept and handed out first; "
        "random without a reward model yet). app/training/selection.py",
        choices=("random", "uncertainty"),
    )
    selection_random_share: float = _opt(
        0.25,
        "uncertainty: share of the new sets picked at random instead, for coverage, spread evenly through "
        "the hand-out order",
        lo=0.0,
        hi=1.0,
    )
    selection_pool: float = _opt(
        2.0,
        "uncertainty: candidates are written for this many times generate_prompts prompts and the chosen "
        "generate_prompts kept (the rest are discarded: that is the generation cost of choosing); 1 = "
        "choose only the hand-out order",
        lo=1.0,
        hi=10.0,
    )
    prompt_set_id: int = _opt(
        0,
        "only prompts of this prompt set get new comparison sets; 0 = every unpaused set",
        lo=0,
        hi=2**31 - 1,
    )
    model_version_id: int = _opt(
        0,
        "the policy version that writes every new candidate; 0 = the newest policy mixed with the active one",
        lo=0,
        hi=2**31 - 1,
    )
    human_replies: int = _opt(
        0,
        "up to this many human-written replies of a prompt already stored (imported Open-Assistant replies, "
        "demonstrations) join each new set beside the model's, so the set compares people with the model",
        lo=0,
        hi=7,
    )
    max_new_tokens: int = _opt(128, "reply length cap when sampling", lo=1, hi=8192)
    temperature: float = _opt(0.8, "sampling temperature (0 = greedy)", lo=0.0, hi=5.0)
    top_p: float = _opt(0.95, "nucleus sampling mass", lo=0.01, hi=1.0)
    dedupe_threshold: float = _opt(
        0.95, "similarity above which two candidates count as one and the later is dropped", lo=0.5, hi=1.0
    )
    generation_batch_size: int = _opt(16, "rows per generate() call", lo=1, hi=1024)

    # --- faults
    max_attempts: int = _opt(
        0, "runs before the round fails; 0 = the round_max_attempts setting", lo=0, hi=20
    )

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def describe(cls) -> dict[str, dict[str, Any]]:
        """Every key with its default and meaning (the CLI's and the API's reference)."""
        return {
            f.name: {"default": f.default, "help": f.metadata["help"], "choices": list(f.metadata["choices"])}
            for f in dataclasses.fields(cls)
        }

    @classmethod
    def resolve(
        cls, overrides: dict[str, Any] | None = None, settings: Settings | None = None
    ) -> RoundConfig:
        """Defaults + overrides, checked; raises ConfigError naming the first bad key."""
        settings = settings or get_settings()
        overrides = dict(overrides or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown round config key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            values[name] = check_value(known[name], value)
        cfg = cls(**values)
        if not cfg.base_model:
            cfg = dataclasses.replace(cfg, base_model=settings.base_model)
        if cfg.max_attempts == 0:
            cfg = dataclasses.replace(cfg, max_attempts=settings.round_max_attempts)
        if cfg.k + cfg.human_replies > MAX_SET_SIZE:
            raise ConfigError(
                f"k + human_replies must be at most {MAX_SET_SIZE} (the largest set annotators rank); "
                f"got {cfg.k} + {cfg.human_replies}"
            )
        return cfg

    def lora_targets(self) -> list[str] | str | None:
        """lora_target_modules as PEFT takes it: None (its default), "all-linear" or a list of names."""
        if not self.lora_target_modules:
            return None
        if self.lora_target_modules == "all-linear":
            return "all-linear"
        return self.lora_target_modules.split(",")

    def promote(self, settings: Settings) -> bool:
        if self.auto_promote == "setting":
            return settings.auto_promote
        return self.auto_promote == "yes"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_stored(cls, stored: dict[str, Any], settings: Settings | None = None) -> RoundConfig:
        """The config saved on a round row, re-checked (the code may have changed since it was queued)."""
        return cls.resolve(stored, settings)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`key=value` strings from the command line; values stay text and are typed by `resolve`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out
