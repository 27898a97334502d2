"""Plain training data handed to the worker's ML functions, and the prompt-level train/held-out split.

The orchestrator builds these from the database; nothing here touches the database.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from app.training.pairs import Pair, pairs_from_tiers

# Called regularly during training with (step, total steps, latest training loss).
ProgressCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class Ranking:
    """One annotator's ranking of K candidates for one prompt."""

    prompt: str
    candidates: list[str]
    # Indices into `candidates`, best tier first; several indices in one tier are a tie.
    tiers: list[list[int]]
    # "All of them are bad": the order among bad replies is noise, so it yields no pair.
    all_bad: bool = False

    def pairs(self) -> list[Pair]:
        """Every (better, worse, tier distance) index pair this ranking implies."""
        if self.all_bad:
            return []
        return pairs_from_tiers(self.tiers)


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: `chosen` was preferred to `rejected` as a reply to `prompt`."""

    prompt: str
    chosen: str
    rejected: str
    # Tier distance in the ranking it came from (1 for neighbours).
    margin: int = 1


def ranking_to_pairs(rankings: Sequence[Ranking]) -> list[PreferencePair]:
    """Expand rankings into text pairs (ties and all-bad rankings give none)."""
    out: list[PreferencePair] = []
    for r in rankings:
        for p in r.pairs():
            out.append(PreferencePair(r.prompt, r.candidates[p.chosen], r.candidates[p.rejected], p.margin))
    return out


class _HasPrompt(Protocol):
    @property
    def prompt(self) -> str: ...


T = TypeVar("T", bound=_HasPrompt)


@dataclass(frozen=True)
class Split(Generic[T]):
    train: list[T]
    heldout: list[T]
    heldout_prompts: list[str] = field(default_factory=list)


def split_by_prompt(items: Sequence[T], heldout_fraction: float, seed: int) -> Split[T]:
    """Hold out whole prompts, not pairs: two rankings of the same prompt must land on the same side,
    otherwise the held-out score rewards memorising the prompt.

    The same seed and data give the same split. Fewer than two distinct prompts: nothing is held out.
    """
    prompts = sorted({item.prompt for item in items})
    n_heldout = 0
    if heldout_fraction > 0 and len(prompts) >= 2:
        # At least one held-out prompt, and at least one left to train on.
        n_heldout = min(max(round(len(prompts) * heldout_fraction), 1), len(prompts) - 1)
    # Sorting first makes the split independent of the order the database returned the rows in.
    random.Random(seed).shuffle(prompts)
    heldout_set = set(prompts[:n_heldout])
    train = [item for item in items if item.prompt not in heldout_set]
    heldout = [item for item in items if item.prompt in heldout_set]
    return Split(train, heldout, sorted(heldout_set))
