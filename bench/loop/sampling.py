"""The bench's own samples from a model version, with the worker's generation code (worker.generation).

A version is the base model plus an optional LoRA adapter directory (`adapter_path` in GET /model-versions,
opened through worker/store.py);
the base model name resolves like the worker resolves it (the default GGUF model is converted once into the
data dir). Every evaluation prompt gets its own seed, the same for every version, so two versions' replies
to one prompt differ only by the weights (paired comparison).
"""

from __future__ import annotations

import gc
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float
    top_p: float
    max_new_tokens: int
    max_prompt_tokens: int
    batch_size: int

    @classmethod
    def from_round_config(cls, cfg: dict[str, Any]) -> SamplingSettings:
        """From a round's resolved config (GET /rounds/{id} `config`): the bench samples like the worker."""
        return cls(
            temperature=float(cfg["temperature"]),
            top_p=float(cfg["top_p"]),
            max_new_tokens=int(cfg["max_new_tokens"]),
            max_prompt_tokens=int(cfg["max_prompt_length"]),
            batch_size=int(cfg["generation_batch_size"]),
        )


def prompt_seeds(prompts: Sequence[str], seed: int) -> list[int]:
    """One seed per prompt, from the bench seed and the prompt text (stable under reordering)."""
    return [random.Random(f"{seed}:{p}").randrange(2**31) for p in prompts]


def sample_version(
    base_model: str,
    adapter_dir: Path | None,
    data_dir: Path,
    prompts: Sequence[str],
    seeds: Sequence[Sequence[int]],
    settings: SamplingSettings,
) -> list[list[str]]:
    """Replies per prompt, one per seed in `seeds[i]` (empty replies kept: they are what the policy says)."""
    from worker.generation import SamplingParams, sample
    from worker.models import load_causal_lm

    model, tokenizer = load_causal_lm(base_model, data_dir=data_dir, adapter_dir=adapter_dir)
    params = SamplingParams(settings.temperature, settings.top_p, settings.max_new_tokens)
    rows = [(i, j, s) for i, row_seeds in enumerate(seeds) for j, s in enumerate(row_seeds)]
    # Similar prompt lengths share a batch (less padding); per-row seeds make the order irrelevant.
    rows.sort(key=lambda r: len(prompts[r[0]]))
    out: list[list[str]] = [[] for _ in prompts]
    by_row: dict[tuple[int, int], str] = {}  # (prompt, seed position) -> reply
    for start in range(0, len(rows), settings.batch_size):
        batch = rows[start : start + settings.batch_size]
        texts = sample(
            model,
            tokenizer,
            [prompts[i] for i, _, _ in batch],
            [s for _, _, s in batch],
            params,
            max_prompt_tokens=settings.max_prompt_tokens,
        )
        for (i, j, _), (text, *_rest) in zip(batch, texts, strict=True):
            by_row[(i, j)] = text
    for i, row_seeds in enumerate(seeds):
        out[i] = [by_row[(i, j)] for j in range(len(row_seeds))]
    del model
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
    return out
