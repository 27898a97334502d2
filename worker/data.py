"""Plain training data handed to the worker's ML functions, and the prompt-level train/held-out split.

The orchestrator builds these from the database; nothing here touches the database.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from app.conversation import PromptLike, flatten
from app.training.pairs import Pair, pairs_from_tiers

# Called regularly during training with (step, total steps, latest training loss).
ProgressCallback = Callable[[int, int, float], None]


def report_eta(progress: Any, step: int, total: int, eta_seconds: float | None) -> None:
    """Tell a progress callback the step count and ETA without a loss (before the first step, during an
    evaluation pass). Only callbacks with an `eta(step, total, seconds)` method hear it (the round's
    ProgressReporter has one); plain `(step, total, loss)` callables are left alone."""
    eta = getattr(progress, "eta", None)
    if progress is not None and callable(eta):
        eta(step, total, eta_seconds)


class WorkMeter:
    """ETA of a stage from units of work (tokens times passes), not steps: a stage's evaluation passes and
    its training steps cost different amounts, and the first step may come after a whole evaluation, so
    "elapsed / steps done" would be wrong for minutes. Units done so far give the rate; the plan the total.
    """

    def __init__(self, total_units: float) -> None:
        self.total = float(total_units)
        self.done = 0.0
        self.started = time.perf_counter()

    def add(self, units: float) -> None:
        self.done += units

    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before any work is done."""
        if self.done <= 0:
            return None
        elapsed = time.perf_counter() - self.started
        return max(0.0, elapsed / self.done * (self.total - self.done))


def length_buckets(lengths: Sequence[int], batch_size: int, seed: int, window: int = 16) -> list[list[int]]:
    """Indices 0..n-1 cut into batches of similar length, every index exactly once, in a seeded random order.

    A batch is padded to its longest member, so mixing a 40-token and a 500-token example wastes most of the
    compute. Examples are shuffled, taken `window` batches at a time, sorted by length inside the window and
    cut into batches; then the batch order is shuffled. The window keeps the order random (an example's
    batch-mates come from a random `window * batch_size` slice), the sort removes most of the padding. The
    last batch may be smaller.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = max(1, batch_size * max(1, window))
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def per_process_batch(batch_size: int, processes: int) -> int:
    """Each data-parallel process's share of a global batch (rounded up: never a smaller global batch)."""
    return max(1, math.ceil(batch_size / max(1, processes)))


class BucketBatchSampler:
    """A DataLoader `batch_sampler` of `length_buckets`, with a fresh order every epoch (seed + epoch)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window: int = 16) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.window = window
        self.epoch = 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = length_buckets(self.lengths, self.batch_size, self.seed + self.epoch, self.window)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size) if self.lengths else 0


@dataclass(frozen=True)
class Ranking:
    """One annotator's ranking of K candidates for one prompt (a text or a conversation)."""

    prompt: PromptLike
    candidates: list[str]
    # Indices into `candidates`, best tier first; several indices in one tier are a tie.
    tiers: list[list[int]]
    # "All of them are bad": the order among bad replies is noise, so it yields no pair.
    all_bad: bool = False
    # Its annotator's weight (round config annotator_weight; 1 unless weighting says otherwise): a
    # multiplier on this ranking's term of the reward model loss and of its pairs' policy loss.
    weight: float = 1.0

    def pairs(self) -> list[Pair]:
        """Every (better, worse, tier distance) index pair this ranking implies."""
        if self.all_bad:
            return []
        return pairs_from_tiers(self.tiers)


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: `chosen` was preferred to `rejected` as a reply to `prompt`."""

    prompt: PromptLike
    chosen: str
    rejected: str
    # Tier distance in the ranking it came from (1 for neighbours).
    margin: int = 1
    # The ranking's annotator weight: a multiplier on this pair's term of the DPO loss.
    weight: float = 1.0


class _Scored(Protocol):
    @property
    def loss(self) -> float: ...


E = TypeVar("E", bound=_Scored)


@dataclass
class BestCheckpoint(Generic[E]):
    """Early stopping on a held-out loss, for the hand-written training loops (reward model, ranking DPO):
    the best evaluation so far, its step and trainable state, and the evaluations since it last improved.

    Start it with the untrained model's state (and its evaluation, if one was made): a run whose every
    evaluation is worse keeps the start.
    """

    patience: int  # evaluations without improvement before `observe` says stop
    state: dict[str, Any]  # the trainable parameters of the best evaluation (CPU copies)
    evaluation: E | None = None  # the best evaluation; None before the first
    step: int = 0  # the update it was made after
    bad: int = 0  # evaluations since the last improvement

    @property
    def loss(self) -> float:
        return self.evaluation.loss if self.evaluation is not None else math.inf

    def observe(self, step: int, current: E, state: Callable[[], dict[str, Any]]) -> bool:
        """Record an evaluation after `step` updates (`state()` is called only on an improvement); True once
        `patience` evaluations in a row have not improved on the best."""
        if current.loss < self.loss:
            self.evaluation, self.state, self.step, self.bad = current, state(), step, 0
            return False
        self.bad += 1
        return self.bad >= self.patience


def widest_gap_first(pairs: Sequence[PreferencePair], n: int, seed: int) -> list[int]:
    """Indices (ascending) of the `n` pairs to train on when an update budget reaches fewer than all of them.

    Widest tier distance first, seeded random order within a distance. Under a Plackett-Luce (or Thurstone)
    model of annotator noise, the farther apart two replies are ranked, the likelier the label is right: a
    K=4 ranking's best-versus-worst pair is its most reliable one, its neighbours the least. So a capped round
    sees every ranking's clearest pair before any ranking's second one.
    """
    rng = random.Random(seed)
    keyed = sorted((-p.margin, rng.random(), i) for i, p in enumerate(pairs))
    return sorted(i for _, _, i in keyed[: max(0, n)])


def ranking_to_pairs(rankings: Sequence[Ranking]) -> list[PreferencePair]:
    """Expand rankings into text pairs (ties and all-bad rankings give none)."""
    out: list[PreferencePair] = []
    for r in rankings:
        for p in r.pairs():
            out.append(
                PreferencePair(r.prompt, r.candidates[p.chosen], r.candidates[p.rejected], p.margin, r.weight)
            )
    return out


class _HasPrompt(Protocol):
    @property
    def prompt(self) -> PromptLike: ...


T = TypeVar("T", bound=_HasPrompt)


@dataclass(frozen=True)
class Split(Generic[T]):
    train: list[T]
    heldout: list[T]
    heldout_prompts: list[PromptLike] = field(default_factory=list)


def split_by_prompt(items: Sequence[T], heldout_fraction: float, seed: int, min_heldout: int = 1) -> Split[T]:
    """Hold out whole prompts, not pairs: two rankings of the same prompt must land on the same side,
    otherwise the held-out score rewards memorising the prompt.

    The same seed and data give the same split. Fewer than two distinct prompts, or a held-out share that
    comes to fewer than `min_heldout` prompts: nothing is held out (a split too small to judge by is noise,
    and the data is worth more as training data).
    """
    prompts = sorted({item.prompt for item in items}, key=_prompt_order)
    n_heldout = 0
    if heldout_fraction > 0 and len(prompts) >= 2:
        # At least one held-out prompt, and at least one left to train on.
        n_heldout = min(max(round(len(prompts) * heldout_fraction), 1), len(prompts) - 1)
        if n_heldout < min_heldout:
            n_heldout = 0
    # Sorting first makes the split independent of the order the database returned the rows in.
    random.Random(seed).shuffle(prompts)
    heldout_set = set(prompts[:n_heldout])
    train = [item for item in items if item.prompt not in heldout_set]
    heldout = [item for item in items if item.prompt in heldout_set]
    return Split(train, heldout, sorted(heldout_set, key=_prompt_order))


def _prompt_order(prompt: PromptLike) -> tuple[str, str]:
    """A total order over texts and conversations together (texts sort as before)."""
    return flatten(prompt), repr(prompt)
