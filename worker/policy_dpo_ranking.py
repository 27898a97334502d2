"""Policy update: DPO straight from rankings, in its Plackett-Luce form (Rafailov et al. 2023, appendix A.3).

Pairwise DPO (worker/policy_dpo.py) expands a ranking of K candidates into its C(K,2) pairs and runs both
replies of every pair through the model: 2*C(K,2) sequences per ranking (12 at K=4). Here a ranking is one
training example: each of its K candidates goes through the model once per step, and the loss is the
negative log-likelihood of the ranking under a Plackett-Luce model whose scores are DPO's implicit rewards:

    r_i     = beta * (log pi(y_i | x) - log pi_ref(y_i | x))                                   (DPO, eq. 5)
    L(tau)  = - sum_{k=1..K} log( exp(r_tau(k)) / sum_{j=k..K} exp(r_tau(j)) )     (appendix A.3, eq. 18)

with tau(1) the best candidate. For K=2 this is -log sigmoid(r_w - r_l), pairwise DPO's loss (eq. 7).

Ties: Breslow's form, the usual one for tied events in a Cox model. Every member i of a tier T_t gets its
own term, and its denominator is the whole "risk set", its tier-mates and every later candidate:

    L = - sum_t sum_{i in T_t} ( r_i - log sum_{j in T_t, T_t+1, ...} exp(r_j) )

So (a) every tied candidate is pushed above everything below its tier, as pairwise DPO pushes it with one
pair per lower candidate; (b) the loss is symmetric in a tier's members, so how a tie is listed changes
nothing; (c) inside a tier the terms pull the members' rewards together (a tier's share is smallest when
they are equal), which is what "equally good" says. Pairwise DPO has no such pull. A strict ranking has
one-member tiers and the sum is eq. 18 (the last term is log 1 = 0). A ranking with a single tier (a full
tie) or marked all-bad gives no pair to pairwise DPO and is left out here too.

One term per ranking; a step's loss is the mean over its rankings, so a ranking weighs the same whatever
its K. Reference log-probabilities are computed once per round, before the first update, by the model as
it starts (a fresh LoRA is a no-op, so that is the base model; a continued adapter is the previous policy):
no second copy of the weights, and every epoch and evaluation reuses them. Dropout is off (as in TRL's
DPOTrainer, `disable_dropout=True`): the margin against the reference would otherwise carry its noise.

Compute: a step takes `batch_size` rankings of similar length (worker.data.length_buckets on each ranking's
longest candidate) and runs all their candidates in ONE forward pass, the language-model head only on the
completion positions (worker.dpo_shared.sequence_logps); the layers below the lowest trainable one run
once per candidate, in the reference pass (worker.frozen_prefix). The shared config, schedule, early stopping
on the held-out loss (whole prompts held out) and adapter layout are pairwise DPO's; this trainer runs in a
single process (one device).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from worker.data import (
    BestCheckpoint,
    ProgressCallback,
    Ranking,
    WorkMeter,
    length_buckets,
    report_eta,
    split_by_prompt,
)
from worker.dpo_shared import DPOTrainConfig, encode_completion, schedule, sequence_logps
from worker.frozen_prefix import BYTES_PER_MB, FrozenPrefix
from worker.lora_policy import cap_prompt, policy_model, write_policy
from worker.models import load_tokenizer, pick_device, resolve_model_path
from worker.weighting import weighted_mean

# The Trainer's default gradient-norm clip, which pairwise DPO runs with.
MAX_GRAD_NORM = 1.0


@dataclass
class EncodedRanking:
    """A ranking with each candidate's (token ids, first completion index) and, once computed, the reference
    log-probabilities, shape (K,)."""

    ranking: Ranking
    sequences: list[tuple[list[int], int]]
    ref_logps: torch.Tensor | None = None

    @property
    def longest(self) -> int:
        return max(len(ids) for ids, _start in self.sequences)


@dataclass
class RankingEval:
    loss: float  # mean Plackett-Luce loss per ranking
    accuracy: float  # share of implied pairs whose chosen reply has the higher implicit reward (NaN: none)
    margin: float  # mean implicit-reward margin r_chosen - r_rejected over those pairs
    pairs: int


@dataclass
class DPORankingResult:
    metrics: dict[str, Any]  # JSON-ready: held-out loss and reward accuracy, steps, timing
    heldout_rankings: list[Ranking]
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per evaluation


# --- the loss -------------------------------------------------------------------------------------------


def plackett_luce_loss(rewards: torch.Tensor, tiers: Sequence[Sequence[int]]) -> torch.Tensor:
    """-log P(ranking) under Plackett-Luce with Breslow ties (module docstring), from K rewards (shape (K,)).

    Candidates in no tier take no part. Returns a scalar connected to `rewards`.
    """
    order = [i for tier in tiers for i in tier]
    r = rewards[torch.tensor(order, device=rewards.device)].float()  # (n,), best first
    # tail[k] = log sum_{j >= k} exp(r_j): a cumulative logsumexp from the worst candidate up.
    tail = torch.logcumsumexp(r.flip(0), dim=0).flip(0)
    # Breslow: a member's denominator starts where its tier starts.
    starts, position = [], 0
    for tier in tiers:
        starts += [position] * len(tier)
        position += len(tier)
    return -(r - tail[torch.tensor(starts, device=r.device)]).sum()


def pairwise_dpo_loss(rewards: torch.Tensor, chosen: int, rejected: int) -> torch.Tensor:
    """Pairwise DPO's loss from implicit rewards (eq. 7): -log sigmoid(r_chosen - r_rejected)."""
    return -F.logsigmoid(rewards[chosen].float() - rewards[rejected].float())


def evaluate_rewards(
    encoded: Sequence[EncodedRanking], policy_logps: Sequence[torch.Tensor], beta: float
) -> RankingEval:
    """Loss, pairwise accuracy and margin of the implicit rewards, from policy and reference log-probs."""
    losses, correct, margins = [], [], []
    for e, logps in zip(encoded, policy_logps, strict=True):
        r = beta * (logps.float().cpu() - _ref(e).float().cpu())
        losses.append(float(plackett_luce_loss(r, e.ranking.tiers)))
        for p in e.ranking.pairs():
            margins.append(float(r[p.chosen] - r[p.rejected]))
            correct.append(margins[-1] > 0)
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    return RankingEval(mean(losses), mean(correct), mean(margins), len(correct))


# --- data -----------------------------------------------------------------------------------------------


def encode_rankings(
    tokenizer: Any, rankings: Sequence[Ranking], max_length: int, max_prompt_length: int | None
) -> list[EncodedRanking]:
    """Token ids of every candidate, the prompt capped first (its end kept), then prompt + reply cut at
    `max_length` (the end goes, as in pairwise DPO)."""
    out = []
    for r in rankings:
        prompt = cap_prompt(tokenizer, r.prompt, max_prompt_length)
        out.append(
            EncodedRanking(r, [encode_completion(tokenizer, prompt, c, max_length) for c in r.candidates])
        )
    return out


def batch_logps(
    model: Any, batch: Sequence[EncodedRanking], pad_id: int, prefix: FrozenPrefix | None = None
) -> list[torch.Tensor]:
    """Every candidate of every ranking in `batch` through one forward pass; one (K,) tensor per ranking."""
    flat = sequence_logps(model, [s for e in batch for s in e.sequences], pad_id, prefix)
    return list(torch.split(flat, [len(e.sequences) for e in batch]))


@torch.no_grad()
def ranking_logps(
    model: Any,
    encoded: Sequence[EncodedRanking],
    pad_id: int,
    rankings_per_pass: int,
    prefix: FrozenPrefix | None = None,
) -> list[torch.Tensor]:
    """Log-probabilities of every candidate without gradients (reference pass, evaluation), in the given
    order; rankings are batched by length so little is padded."""
    by_length = sorted(range(len(encoded)), key=lambda i: encoded[i].longest)
    out: list[torch.Tensor] = [torch.empty(0)] * len(encoded)
    for start in range(0, len(by_length), rankings_per_pass):
        chunk = by_length[start : start + rankings_per_pass]
        logps_of = batch_logps(model, [encoded[i] for i in chunk], pad_id, prefix)
        for i, logps in zip(chunk, logps_of, strict=True):
            out[i] = logps.detach().float().cpu()
    return out


def padded_tokens(batch: Sequence[EncodedRanking]) -> int:
    """Tokens one forward pass over the batch computes (every candidate padded to the longest)."""
    return sum(len(e.sequences) for e in batch) * max(e.longest for e in batch)


def rankings_loss(
    model: Any,
    encoded: Sequence[EncodedRanking],
    pad_id: int,
    beta: float,
    prefix: FrozenPrefix | None = None,
) -> torch.Tensor:
    """A step's loss: the mean over the batch's rankings of their Plackett-Luce loss (needs `ref_logps`),
    each weighted by its annotator's weight (`Ranking.weight`, 1 without annotator weighting)."""
    logps = batch_logps(model, encoded, pad_id, prefix)
    per = [
        plackett_luce_loss(beta * (lp.float() - _ref(e).to(lp.device)), e.ranking.tiers)
        for lp, e in zip(logps, encoded, strict=True)
    ]
    return weighted_mean(torch.stack(per), [e.ranking.weight for e in encoded])


def _ref(e: EncodedRanking) -> torch.Tensor:
    if e.ref_logps is None:
        raise ValueError("reference log-probabilities not computed for this ranking")
    return e.ref_logps


# --- training -------------------------------------------------------------------------------------------


def _trainable_policy(path: str, previous_adapter: Path | None, cfg: DPOTrainConfig, device: Any) -> Any:
    """The PEFT model to train: the previous adapter, or a fresh LoRA (seeded); every dropout off."""
    from peft import get_peft_model

    model, lora = policy_model(path, previous_adapter, cfg)
    if lora is not None:
        torch.manual_seed(cfg.seed)
        model = get_peft_model(model, lora)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    return model.to(device)


def plan_batches(lengths: Sequence[int], cfg: DPOTrainConfig) -> tuple[list[list[int]], int]:
    """(the run's batches in order, optimizer updates): length-bucketed epochs, a fresh seeded order each,
    as many as the epochs (fractions allowed) or the `max_steps` cap allow."""
    per_epoch = max(1, math.ceil(math.ceil(len(lengths) / cfg.batch_size) / cfg.grad_accum))
    total = max(1, math.ceil(per_epoch * cfg.epochs))
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < total * cfg.grad_accum:
        batches += length_buckets(lengths, cfg.batch_size, cfg.seed + epoch)
        epoch += 1
    return batches[: total * cfg.grad_accum], total


def train_dpo_ranking(
    cfg: DPOTrainConfig,
    rankings: Sequence[Ranking],
    output_dir: Path,
    *,
    previous_adapter: Path | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> DPORankingResult:
    """Plackett-Luce DPO of a LoRA policy on these rankings; the best held-out adapter is saved to
    `output_dir`."""
    from transformers import get_linear_schedule_with_warmup

    started = time.perf_counter()
    spec = pick_device(cfg.device)
    # Annotator weight 0 (weighting found them unreliable) adds nothing to the loss: not even a pass.
    split = split_by_prompt(
        [r for r in rankings if r.pairs() and r.weight > 0],
        cfg.heldout_fraction,
        cfg.seed,
        cfg.min_heldout_prompts,
    )
    if not split.train:
        raise ValueError("no training rankings: every ranking is a full tie or all-bad, or all were held out")

    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    pad_id = int(tokenizer.pad_token_id)
    model = _trainable_policy(path, previous_adapter, cfg, spec.device)
    # The frozen bottom layers run once per sequence, in the reference pass (None: every pass is whole).
    prefix = FrozenPrefix.attach(model, cfg.prefix_cache_mb * BYTES_PER_MB)
    autocast = lambda: (  # noqa: E731
        torch.autocast("cuda", dtype=torch.bfloat16) if spec.use_bf16 else nullcontext()
    )

    loop_started = time.perf_counter()  # throughput counts tokenising, the reference pass and the steps
    train = encode_rankings(tokenizer, split.train, cfg.max_length, cfg.max_prompt_length)
    heldout = encode_rankings(tokenizer, split.heldout, cfg.max_length, cfg.max_prompt_length)
    plan, total = plan_batches([e.longest for e in train], cfg)
    warmup, eval_every = schedule(total, cfg.warmup_ratio, cfg.eval_every)
    used = sorted({i for batch in plan for i in batch})  # a step cap may leave rankings out
    n_evals = (total // eval_every + 1) if heldout else 0
    meter = WorkMeter(
        sum(padded_tokens([train[i]]) for i in used)
        + 3 * sum(padded_tokens([train[i] for i in b]) for b in plan)
        + n_evals * sum(padded_tokens([e]) for e in heldout)
    )
    report_eta(progress, 0, total, None)

    # The reference: the model as it starts, once, for every ranking a step or an evaluation will read.
    model.eval()
    with autocast():
        refs = ranking_logps(model, [train[i] for i in used] + heldout, pad_id, 2 * cfg.batch_size, prefix)
    for e, ref in zip([train[i] for i in used] + heldout, refs, strict=True):
        e.ref_logps = ref
        meter.add(padded_tokens([e]))
    ref_seconds = time.perf_counter() - loop_started

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_schedule = get_linear_schedule_with_warmup(optimizer, warmup, total)

    def evaluate() -> RankingEval:
        model.eval()
        with autocast():
            logps = ranking_logps(model, heldout, pad_id, 2 * cfg.batch_size, prefix)
        meter.add(sum(padded_tokens([e]) for e in heldout))
        model.train()
        return evaluate_rewards(heldout, logps, cfg.beta)

    def trainable_state() -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}

    step, losses, history = 0, [], []
    best: BestCheckpoint[Any] = BestCheckpoint(cfg.patience, trainable_state())
    stopped_early, eval_seconds = False, 0.0
    model.train()
    for micro, indices in enumerate(plan):
        batch = [train[i] for i in indices]
        with autocast():
            loss = rankings_loss(model, batch, pad_id, cfg.beta, prefix)
        (loss / cfg.grad_accum).backward()
        losses.append(float(loss.detach()))
        meter.add(3 * padded_tokens(batch))
        if (micro + 1) % cfg.grad_accum:
            continue
        torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if progress is not None and (step % cfg.logging_steps == 0 or step == total):
            progress(step, total, sum(losses[-cfg.grad_accum :]) / cfg.grad_accum)
        report_eta(progress, step, total, meter.eta())

        if heldout and (step % eval_every == 0 or step == total):
            eval_started = time.perf_counter()
            current = evaluate()
            eval_seconds += time.perf_counter() - eval_started
            history.append(
                {"step": step, "heldout_loss": current.loss, "heldout_reward_accuracy": current.accuracy}
            )
            if best.observe(step, current, trainable_state):
                stopped_early = step < total
                break
    train_seconds = time.perf_counter() - loop_started - eval_seconds

    if heldout:
        model.load_state_dict(best.state, strict=False)
    best_eval, best_step = best.evaluation, best.step if heldout else step
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "base_model": cfg.base_model,
        "parent_adapter": str(previous_adapter or ""),
        "method": "dpo_ranking",
    }
    write_policy(model, tokenizer, output_dir, meta)

    metrics: dict[str, Any] = {
        "method": "dpo_ranking",
        "heldout_loss": best_eval.loss if best_eval else None,
        "heldout_reward_accuracy": best_eval.accuracy if best_eval else None,
        "heldout_reward_margin": best_eval.margin if best_eval else None,
        "heldout_rankings": len(split.heldout),
        "heldout_pairs": sum(len(r.pairs()) for r in split.heldout),
        "heldout_prompts": len(split.heldout_prompts),
        "train_rankings": len(split.train),
        "train_pairs": sum(len(r.pairs()) for r in split.train),
        "train_candidates": sum(len(r.candidates) for r in split.train),
        "train_loss": sum(losses) / len(losses) if losses else None,
        "steps": step,
        "total_steps": total,
        "best_step": best_step,
        "stopped_early": stopped_early,
        "device": str(spec.device),
        "ref_seconds": round(ref_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        **(prefix.metrics() if prefix else {"prefix_layers": 0}),
    }
    return DPORankingResult(metrics, list(split.heldout), history)
