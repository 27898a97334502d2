"""What the two DPO trainers share: the config, the schedule, completion log-probabilities, and preferences
labelled by the reward model on fresh samples.

- worker/policy_dpo.py: pairwise DPO through TRL's DPOTrainer, on (prompt, chosen, rejected) pairs;
- worker/policy_dpo_ranking.py: the Plackett-Luce form of DPO on whole rankings, its own training loop.

Nothing here imports TRL, so the ranking trainer (and its tests) load without it.

Completion log-probabilities: a candidate is the text `format_exchange(prompt, reply)` tokenised; its
completion is every token after `format_prompt(prompt)`'s tokens (the reply and the end-of-turn tokens),
which is what DPO trains on. log pi(y|x) = sum over completion tokens t of log softmax(logits_{t-1})[y_t].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from app.conversation import PromptLike
from worker.data import PreferencePair, Ranking
from worker.frozen_prefix import FrozenPrefix, run_model
from worker.generation import CandidateConfig, generate_candidates
from worker.models import DEFAULT_MODEL_NAME, format_exchange, format_prompt
from worker.reward_scoring import RewardModel


@dataclass
class DPOTrainConfig:
    base_model: str = DEFAULT_MODEL_NAME  # the default name, an HF model id or a local path
    beta: float = 0.1  # strength of the pull towards the reference; higher keeps the policy closer
    lr: float = 5e-5  # AdamW learning rate (TRL's 1e-6 default suits full fine-tuning, not LoRA)
    epochs: float = 1.0  # passes over the training data, fractions allowed (early stopping may end sooner)
    max_steps: int = 0  # cap on optimizer updates; 0: the epochs decide
    batch_size: int = 4  # pairs (pairwise DPO) or rankings (ranking DPO) per device per step
    grad_accum: int = 1  # steps accumulated per optimizer update
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup_ratio: float = 0.1  # share of the updates with a linearly rising learning rate
    lora_r: int = 16  # LoRA rank (fresh adapters only, see worker/lora_policy.py)
    lora_alpha: int = 32  # LoRA scaling numerator (effective scale alpha / r)
    lora_dropout: float = 0.05  # dropout on the LoRA branch input (TRL's DPO turns every dropout off)
    # Module names to adapt, or "all-linear"; None: PEFT's per-architecture default (e.g. q/v projections).
    lora_target_modules: list[str] | str | None = None
    lora_top_layers: float = 1.0  # share of the layers, from the top, that get a fresh LoRA; 1: all
    max_length: int = 1024  # prompt + reply tokens; the end of longer sequences is cut (as TRL does)
    max_prompt_length: int | None = None  # prompts longer than this lose their beginning first; None: no cap
    seed: int = 0  # seeds the held-out split, LoRA initialisation and data order
    heldout_fraction: float = 0.1  # share of PROMPTS (not pairs) kept out of training for validation
    patience: int = 2  # evaluations without held-out DPO-loss improvement before stopping
    min_heldout_prompts: int = 1  # a held-out share under this many prompts is not held out (no selection)
    eval_every: int | None = None  # updates between evaluations; None: about 5 evaluations per run
    logging_steps: int = 1  # updates between progress callbacks
    gradient_checkpointing: bool = False  # saves activation memory at ~20% more compute; for large models
    # Ranking DPO only: CPU memory for the frozen layers' cached activations (worker.frozen_prefix); 0: off
    prefix_cache_mb: int = 2048
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


# --- completion log-probabilities ------------------------------------------------------------------------


def encode_completion(
    tokenizer: Any, prompt: PromptLike, reply: str, max_length: int | None
) -> tuple[list[int], int]:
    """(token ids of prompt + reply, index of the first completion token); ids cut at `max_length`."""
    add_special = not getattr(tokenizer, "chat_template", None)
    prompt_ids = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=add_special)["input_ids"]
    ids = list(
        tokenizer(format_exchange(tokenizer, prompt, reply), add_special_tokens=add_special)["input_ids"]
    )
    return (ids[:max_length] if max_length else ids), len(prompt_ids)


def sequence_logps(
    model: Any, sequences: Sequence[tuple[list[int], int]], pad_id: int, prefix: FrozenPrefix | None = None
) -> torch.Tensor:
    """log pi(completion | prompt) of N (ids, completion start) sequences, in ONE forward pass: shape (N,).

    Right-padded to the longest sequence (L). The language-model head runs only on the last
    L - min(start) + 1 positions (`logits_to_keep`): prompt positions predict nothing we need, and the head
    (hidden x vocabulary per position) is a large share of a small model's compute. Gradients flow when the
    caller has them enabled (autocast too). A sequence whose completion was cut away entirely has
    log-probability 0. With `prefix`, the frozen bottom layers run once per sequence (worker.frozen_prefix).
    """
    device = next(model.parameters()).device
    n, longest = len(sequences), max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((n, longest), int(pad_id), dtype=torch.long)
    mask = torch.zeros((n, longest), dtype=torch.long)
    for row, (ids, _start) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    # Token t is predicted at position t - 1; keep positions first-1 .. L-1 (the last predicts nothing).
    first = max(1, min(start for _ids, start in sequences))
    keep = longest - first + 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    logits = run_model(model, input_ids, mask, prefix, logits_to_keep=keep).logits
    logits = logits[:, :-1].float()  # (N, L - first, V): position p predicts token first + p
    targets = input_ids[:, first:]  # (N, L - first)
    token_logps = logits.gather(2, targets[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)
    positions = torch.arange(first, longest, device=device)[None, :]
    starts = torch.tensor([s for _ids, s in sequences], device=device)[:, None]
    completion = (positions >= starts) & mask[:, first:].bool()
    return (token_logps * completion).sum(dim=1)


@torch.inference_mode()
def completion_logprobs(
    model: Any, tokenizer: Any, prompts: Sequence[PromptLike], completions: Sequence[str]
) -> list[float]:
    """Sum of the policy's log-probabilities of each completion's tokens given its prompt (chat-formatted),
    one sequence per forward pass (no padding at all: a reference for tests and evaluation)."""
    device = next(model.parameters()).device
    out: list[float] = []
    for prompt, completion in zip(prompts, completions, strict=True):
        full_ids, start = encode_completion(tokenizer, prompt, completion, None)
        ids = torch.tensor([full_ids], device=device)
        logits = model(input_ids=ids).logits[0, :-1].float()
        token_logprobs = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
        out.append(float(token_logprobs[start - 1 :].sum()))
    return out


# --- reward-model-labelled preferences on fresh samples -------------------------------------------------


def reward_scored_samples(
    policy: Any,
    tokenizer: Any,
    reward_model: RewardModel,
    prompts: Sequence[PromptLike],
    cfg: CandidateConfig,
) -> list[tuple[PromptLike, list[str], list[float]]]:
    """(prompt, replies, reward scores) for `cfg.k` replies sampled per prompt; prompts with fewer than two
    distinct replies are left out."""
    generated = generate_candidates(policy, tokenizer, prompts, cfg)
    out = []
    for prompt, candidates in zip(prompts, generated.candidates, strict=True):
        if len(candidates) >= 2:
            texts = [c.text for c in candidates]
            out.append((prompt, texts, reward_model.score(prompt, texts)))
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
    pairs: list[PreferencePair] = []
    for prompt, texts, scores in reward_scored_samples(policy, tokenizer, reward_model, prompts, cfg):
        best = max(range(len(scores)), key=scores.__getitem__)
        worst = min(range(len(scores)), key=scores.__getitem__)
        if scores[best] - scores[worst] > min_gap:
            pairs.append(PreferencePair(prompt, texts[best], texts[worst]))
    return pairs


def reward_labelled_rankings(
    policy: Any,
    tokenizer: Any,
    reward_model: RewardModel,
    prompts: Sequence[PromptLike],
    cfg: CandidateConfig,
    *,
    min_gap: float = 0.0,
) -> list[Ranking]:
    """Synthetic rankings: every sampled reply ordered by reward, equal scores tied; what ranking DPO reads.

    Same prompts left out as `reward_labelled_pairs` (fewer than two distinct replies, or a best-worst gap not
    above `min_gap`).
    """
    rankings: list[Ranking] = []
    for prompt, texts, scores in reward_scored_samples(policy, tokenizer, reward_model, prompts, cfg):
        if max(scores) - min(scores) <= min_gap:
            continue
        tiers = [
            [i for i in range(len(texts)) if scores[i] == value]
            for value in sorted(set(scores), reverse=True)
        ]
        rankings.append(Ranking(prompt, texts, tiers))
    return rankings
