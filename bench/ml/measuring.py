"""What the ML benchmarks measure a trainer with: its training forward passes (PassCounter), step times,
a reward model's held-out pairwise accuracy and loss, an untimed warm-up step, and McNemar's test between
two models judged on the same held-out pairs.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PassCounter:
    """Counts training forward passes (sequences and computed tokens, padding included) on any model.

    A global hook on the token embedding: it sees every forward pass of both trainers without touching
    either. Inference (evaluation) runs without gradients and is not counted.
    """

    vocab_size: int
    sequences: int = 0
    padded_tokens: int = 0
    passes: int = 0
    # Wall and process CPU time at the first training forward pass: the start of the CPU-time window.
    first_wall: float = math.nan
    first_cpu: float = math.nan

    def __call__(self, module: Any, args: tuple[Any, ...]) -> None:
        import torch

        if (
            isinstance(module, torch.nn.Embedding)
            and module.num_embeddings == self.vocab_size
            and torch.is_grad_enabled()
            and args
        ):
            batch, length = args[0].shape[:2]
            self.sequences += int(batch)
            self.padded_tokens += int(batch) * int(length)
            if not self.passes:
                self.first_wall, self.first_cpu = time.perf_counter(), time.process_time()
            self.passes += 1


@dataclass
class SideResult:
    name: str
    train_seconds: float = math.nan
    # Process CPU time (all threads) from the first training forward pass to the end of the last step: less
    # sensitive than wall time to other processes taking the cores, as long as torch threads do not spin.
    cpu_seconds: float = math.nan
    steps: int = 0
    step_times: list[float] = field(default_factory=list)
    counter: PassCounter | None = None
    accuracy: float = math.nan
    heldout_loss: float = math.nan
    correct: list[bool] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def step_durations(stamps: list[float], total: float) -> list[float]:
    """Each step's duration from the end-of-step times; the first one is what the total leaves for it."""
    if not stamps:
        return []
    rest = [b - a for a, b in itertools.pairwise(stamps)]
    return [total - sum(rest), *rest]


def heldout_eval(rm: Any, heldout: list[Any]) -> tuple[float, float, list[bool]]:
    """Pairwise accuracy and loss of a `RewardModel` on the held-out pairs, each candidate scored once."""
    correct: list[bool] = []
    losses: list[float] = []
    for r in heldout:
        scores = rm.score(r.prompt, r.candidates)
        for p in r.pairs():
            diff = scores[p.chosen] - scores[p.rejected]
            correct.append(diff > 0)
            losses.append(math.log1p(math.exp(-diff)) if diff > -30 else -diff)
    return statistics.fmean(correct), statistics.fmean(losses), correct


def warm_up(cfg: Any, path: str, tokenizer: Any, sequences: int) -> None:
    """One untimed training step's worth of work, so neither side pays the process's first-use costs
    (thread pool start, kernel selection, allocator growth) in its timing."""
    import torch

    from worker.reward import build_reward_model

    model = build_reward_model(path, tokenizer, cfg)
    model.train()
    ids = torch.full((sequences, cfg.max_length), 100)
    for _ in range(2):
        model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum().backward()


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs: both models judged the same held-out pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)
