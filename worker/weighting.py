"""Annotator weights in the policy's DPO loss: a per-pair multiplier, TRL's loss code untouched.

The weights come from app.quality.gold (round config `annotator_weight`) through worker/data.py's rankings
and pairs; the reward model and ranking DPO weigh their per-ranking losses with `weighted_mean`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from worker.data import PreferencePair


def normalised_weights(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """The pairs of positive weight, their weights scaled to mean 1 (the learning rate keeps its meaning
    whatever the weights); weight-0 pairs are left out, they would add nothing to the loss."""
    kept = [p for p in pairs if p.weight > 0]
    if not kept:
        return []
    mean = sum(p.weight for p in kept) / len(kept)
    return [dataclasses.replace(p, weight=p.weight / mean) for p in kept]


class _ScaleRows(torch.autograd.Function):
    """Identity forward; backward multiplies row i's gradient by w[i]."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (w,) = ctx.saved_tensors
        return grad * w.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1))), None


class WeightedForward:
    """The policy, its per-token log-probabilities passed through _ScaleRows with each pair's weight.

    TRL's batch is [chosen rows; rejected rows] and pair i's loss term reads only rows i and B + i, so
    scaling both rows' gradients by w_i makes the step's gradient that of mean_i(w_i * loss_i): a
    per-example multiplier on the DPO loss, TRL's loss code untouched. (The logged loss stays unweighted.)
    """

    def __init__(self, model: Any, weights: torch.Tensor) -> None:
        self._model, self._weights = model, weights

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._model(*args, **kwargs)
        w = self._weights.to(out.log_probs.device)
        out.log_probs = _ScaleRows.apply(out.log_probs, torch.cat([w, w]))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def with_weights(collate: Any) -> Any:
    """TRL's collator, plus a `weight` tensor when the examples carry one (TRL's own ignores it)."""

    def collate_weighted(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(examples)
        if examples and "weight" in examples[0]:
            batch["weight"] = torch.tensor([float(e["weight"]) for e in examples])
        return batch

    return collate_weighted


def weighted_mean(losses: torch.Tensor, weights: Sequence[float], total: float | None = None) -> torch.Tensor:
    """sum(w_i * loss_i) / total, total = sum(w_i) unless given (a process's share of a global batch divides
    by the whole batch's weight): the rankings' losses weighted by their annotators' weights. A ranking of
    weight 0 neither moves the loss nor its gradient; a batch of weight 0 only gives a zero that is still
    connected to the scores (every process's backward pass sees the same parameters)."""
    w = torch.tensor(list(weights), dtype=losses.dtype, device=losses.device)
    total = float(w.sum()) if total is None else total
    if total <= 0:
        return losses.sum() * 0.0
    return (losses * w).sum() / total
