"""Sample K candidate replies per prompt, batched across prompts, each reproducible from its own seed.

How a seed maps to an output: every candidate is one row of a batch and owns a `torch.Generator` seeded with
its recorded seed; all of that row's sampling draws come from that generator and from nothing else. So
`sample(model, tokenizer, [prompt], [seed], params)` re-creates the candidate whichever prompts it was batched
with. (The row's logits are computed in a padded batch; different padding can change them in the last float
bits, which in principle can flip a draw sitting exactly on a probability boundary; on GPU, non-deterministic
kernels add the same caveat.) HF's own sampler draws from the global RNG for the whole batch at once, which
would tie each candidate to its batch-mates, so sampling is done in a logits processor instead: it picks each
row's token with the row's generator and masks every other token, and `generate` then runs greedily.

Under `accelerate launch` each process uses its own device; give each process its own share of prompts
(e.g. `accelerate.PartialState().split_between_processes(prompts)`).
"""

from __future__ import annotations

import difflib
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerBase

from app.conversation import PromptLike, flatten
from worker.models import format_prompt, load_causal_lm


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8  # 0 means greedy decoding (the seed then has no effect)
    top_p: float = 0.95  # nucleus sampling: keep the smallest token set with this much probability mass
    max_new_tokens: int = 256  # reply length cap; a reply that hits it has finish_reason "length"


@dataclass(frozen=True)
class CandidateConfig:
    k: int = 4  # distinct candidates wanted per prompt
    sampling: SamplingParams = field(default_factory=SamplingParams)
    batch_size: int = 16  # rows (prompt x candidate) per generate() call; bounds memory
    seed: int | None = None  # derives every candidate's seed; None draws a fresh one (still recorded)
    max_prompt_tokens: int = 1024  # longer prompts lose their beginning; the end holds the question
    dedupe_threshold: float = 0.95  # difflib ratio above which two replies count as the same one
    refill_rounds: int = 2  # extra sampling rounds to replace duplicates and empty replies
    drop_empty: bool = True  # an empty reply is useless to rank


@dataclass(frozen=True)
class Candidate:
    prompt_index: int  # position of the prompt in the input list
    text: str
    seed: int  # re-creates this candidate (see module docstring)
    params: SamplingParams
    prompt_tokens: int
    completion_tokens: int  # includes the end-of-sequence token when there is one
    finish_reason: str  # "stop" (end-of-sequence) or "length" (hit max_new_tokens)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationResult:
    candidates: list[list[Candidate]]  # per prompt, in input order; may hold fewer than k (see dropped)
    completion_tokens: int  # everything sampled, duplicates included
    seconds: float  # wall time spent in generate()
    dropped: int  # duplicates and empty replies discarded

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class _PerRowSampler(LogitsProcessor):
    """Temperature + top-p sampling with one generator per row; returns a one-hot mask for greedy search.

    Each row draws one uniform number per step from its own generator and picks the token by inverse CDF over
    the nucleus. The nucleus comes from the top `_TOP_K` tokens when they already hold `top_p` of the mass
    (nearly always), else from a full sort: same result, without sorting the whole vocabulary every step.
    """

    _TOP_K = 256

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float) -> None:
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def _pick(self, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.top_p < 1.0:
            values, index = probs.topk(min(self._TOP_K, probs.shape[-1]))
            if values.sum() < self.top_p:
                values, index = probs.sort(descending=True)
            # Keep a token while the mass before it is below top_p; the most likely token always stays.
            keep = (values.cumsum(0) - values) < self.top_p
            values, index = values[keep], index[keep]
        else:
            values, index = probs, torch.arange(probs.shape[-1], device=probs.device)
        cdf = values.cumsum(0)
        u = torch.rand((), generator=generator, device=probs.device) * cdf[-1]
        position = torch.searchsorted(cdf, u.reshape(1), right=True).clamp(max=len(cdf) - 1)
        return index[position]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        chosen = torch.stack([self._pick(probs[i], g) for i, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen, 0.0)
        return out  # type: ignore[return-value]


class _StepCounter(LogitsProcessor):
    """Leaves the scores alone; calls `on_step(n)` at the n-th decoding step (1-based) of a batch."""

    def __init__(self, on_step: Callable[[int], None]) -> None:
        self.on_step = on_step
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps += 1
        self.on_step(self.steps)
        return scores


def sample(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[PromptLike],
    seeds: Sequence[int],
    params: SamplingParams,
    *,
    max_prompt_tokens: int = 1024,
    on_step: Callable[[int], None] | None = None,
) -> list[tuple[str, int, int, str]]:
    """One reply per (prompt, seed) row in one batch: (text, prompt tokens, completion tokens, finish).

    `on_step(n)` is called at every decoding step (live progress of a long batch)."""
    if len(prompts) != len(seeds):
        raise ValueError("one seed per prompt row")
    if not prompts:
        return []
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"  # new tokens are appended on the right of every row
    tokenizer.truncation_side = "left"
    texts = [format_prompt(tokenizer, p) for p in prompts]
    # The chat template already starts with any special tokens the model wants.
    add_special = not getattr(tokenizer, "chat_template", None)
    enc = tokenizer(
        texts,
        return_tensors="pt",
        padding=True,
        truncation=True,
        max_length=max_prompt_tokens,
        add_special_tokens=add_special,
    ).to(device)
    eos_ids = _eos_ids(model, tokenizer)
    processors = LogitsProcessorList()
    if on_step is not None:
        processors.append(_StepCounter(on_step))
    if params.temperature > 0:
        gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        processors.append(_PerRowSampler(gens, params.temperature, params.top_p))
    config = GenerationConfig(
        max_new_tokens=params.max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=sorted(eos_ids),
    )
    with torch.inference_mode():
        out = model.generate(**enc, generation_config=config, logits_processor=processors)
    new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
    prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
    rows = []
    for tokens, n_prompt in zip(new_tokens, prompt_lengths, strict=True):
        end = next((i for i, t in enumerate(tokens) if t in eos_ids), None)
        kept = tokens if end is None else tokens[:end]
        text = str(tokenizer.decode(kept, skip_special_tokens=True)).strip()
        n_completion = len(tokens) if end is None else end + 1
        rows.append((text, int(n_prompt), n_completion, "length" if end is None else "stop"))
    return rows


def _eos_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def is_near_duplicate(a: str, b: str, threshold: float) -> bool:
    """Same text up to case and whitespace, or difflib similarity above the threshold."""
    na, nb = _normalise(a), _normalise(b)
    if na == nb:
        return True
    matcher = difflib.SequenceMatcher(None, na, nb, autojunk=False)
    # quick_ratio is a cheap upper bound: most pairs are rejected without the full comparison.
    return matcher.quick_ratio() > threshold and matcher.ratio() > threshold


def _offset(on_step: Callable[[int], None] | None, before: int) -> Callable[[int], None] | None:
    """`on_step` counting on from `before` steps (the steps of the batches already done)."""
    if on_step is None:
        return None
    report = on_step
    return lambda n: report(before + n)


def generate_candidates(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[PromptLike],
    cfg: CandidateConfig,
    *,
    on_step: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Up to `cfg.k` distinct candidates for every prompt, sampled in batches of `cfg.batch_size` rows.

    `on_step(n)`: called at the n-th decoding step, counted over the whole call (batches one after another
    count as one long run of steps, each batch up to max_new_tokens)."""
    base_seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(2**31)
    # One stream of seeds for the whole call: the same base seed and prompts give the same candidates.
    seed_stream = random.Random(base_seed)
    kept: list[list[Candidate]] = [[] for _ in prompts]
    total_tokens, seconds, dropped = 0, 0.0, 0
    steps_before = 0  # decoding steps of earlier batches, at max_new_tokens each

    for _round in range(1 + cfg.refill_rounds):
        rows = [
            (i, seed_stream.randrange(2**31))
            for i in range(len(prompts))
            for _ in range(cfg.k - len(kept[i]))
        ]
        if not rows:
            break
        # Similar lengths share a batch, so less compute goes to padding; per-row seeds make order irrelevant.
        rows.sort(key=lambda row: len(flatten(prompts[row[0]])))
        for start in range(0, len(rows), cfg.batch_size):
            batch = rows[start : start + cfg.batch_size]
            t0 = time.perf_counter()
            outputs = sample(
                model,
                tokenizer,
                [prompts[i] for i, _ in batch],
                [s for _, s in batch],
                cfg.sampling,
                max_prompt_tokens=cfg.max_prompt_tokens,
                on_step=_offset(on_step, steps_before),
            )
            steps_before += cfg.sampling.max_new_tokens
            seconds += time.perf_counter() - t0
            for (i, seed), (text, n_prompt, n_completion, finish) in zip(batch, outputs, strict=True):
                total_tokens += n_completion
                if (cfg.drop_empty and not text) or any(
                    is_near_duplicate(text, c.text, cfg.dedupe_threshold) for c in kept[i]
                ):
                    dropped += 1
                    continue
                if len(kept[i]) < cfg.k:
                    kept[i].append(Candidate(i, text, seed, cfg.sampling, n_prompt, n_completion, finish))
        if cfg.sampling.temperature == 0:
            break  # greedy decoding gives the same reply again; refilling cannot help
    return GenerationResult(kept, total_tokens, seconds, dropped)


def generate_for_prompts(
    base_model: str,
    prompts: Sequence[PromptLike],
    cfg: CandidateConfig,
    *,
    adapter_dir: Path | None = None,
    data_dir: Path | None = None,
) -> GenerationResult:
    """Load the policy (base model + optional LoRA adapter) and generate candidates for these prompts."""
    model, tokenizer = load_causal_lm(base_model, data_dir=data_dir, adapter_dir=adapter_dir)
    return generate_candidates(model, tokenizer, prompts, cfg)


@dataclass(frozen=True)
class GenerationTask:
    """One chunk of one version's candidates, everything a process needs to write them (picklable)."""

    base_model: str
    adapter_name: str | None  # None (with adapter_dir None): the base model itself
    adapter_dir: Path | None
    prompts: list[PromptLike]
    cfg: CandidateConfig

    @property
    def rows(self) -> int:
        """Replies asked for: prompts x k."""
        return len(self.prompts) * self.cfg.k


def generate_tasks(
    tasks: Sequence[GenerationTask],
    *,
    data_dir: Path | None = None,
    progress: Any = None,
    on_step: Callable[[int, int], Callable[[int], None] | None] | None = None,
) -> list[GenerationResult]:
    """Every task's candidates, in order, one base model per base in memory with the adapters switched on it
    (worker/adapters.py). The round's generation runs this in the worker and, for part of its tasks, in a
    child process (worker/launch.py). `progress.eta(rows_done, rows, None)` after each task when given;
    `on_step(rows_before, task_rows)` gives a task's per-decoding-step callback (`generate_candidates`)."""
    from worker.adapters import AdapterHost

    hosts: dict[str, AdapterHost] = {}
    rows = sum(t.rows for t in tasks)
    done = 0
    out: list[GenerationResult] = []
    for task in tasks:
        host = hosts.setdefault(task.base_model, AdapterHost(task.base_model, data_dir=data_dir))
        with host.use(task.adapter_name, task.adapter_dir) as (model, tokenizer):
            step = on_step(done, task.rows) if on_step is not None else None
            out.append(generate_candidates(model, tokenizer, task.prompts, task.cfg, on_step=step))
        done += task.rows
        if progress is not None:
            progress.eta(done, rows, None)
    return out
