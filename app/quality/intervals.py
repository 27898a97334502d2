"""Confidence intervals for proportions: Wilson score intervals and a cluster bootstrap."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

CIMethod = Literal["wilson", "bootstrap"]
DEFAULT_BOOTSTRAP_ROUNDS = 1000
# The level of every interval the dashboard shows.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Proportion:
    """A rate with its confidence interval, the number of observations, and the rate expected by chance."""

    estimate: float  # NaN when n == 0
    low: float
    high: float
    n: int
    expected: float | None = None


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile for a confidence level (1.959964 for 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for successes/n; successes may be fractional (a tie counts as half)."""
    z = z_value(confidence)
    if n <= 0:
        # Nothing observed: every rate is possible.
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
    # Wilson rather than the Wald interval: it stays inside [0, 1] and keeps its coverage near 0 and 1
    # and for the small counts a young project has. Half-counted ties have less variance than a coin
    # flip, so with ties the interval is slightly conservative.
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def resampled_weights(
    clusters: npt.NDArray[np.int64], rounds: int, rng: np.random.Generator
) -> Iterator[npt.NDArray[np.float64]]:
    """Per bootstrap round, how many times each observation is drawn when whole clusters are resampled.

    `clusters` holds a dense cluster code 0..C-1 per observation. Resampling clusters (one ranking's pairs
    together) rather than single pairs keeps the correlation between pairs of one ranking in the interval.
    """
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    for _ in range(rounds):
        draws = rng.integers(0, n_clusters, n_clusters)
        counts = np.bincount(draws, minlength=n_clusters).astype(np.float64)
        yield counts[clusters]


def dense_codes(keys: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Map arbitrary integer keys to 0..C-1 (same key, same code)."""
    _, codes = np.unique(np.asarray(keys, dtype=np.int64), return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def percentile_interval(samples: npt.NDArray[np.float64], confidence: float) -> tuple[float, float]:
    """Percentile bootstrap interval of a 1-d sample."""
    alpha = 1 - confidence
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def proportion(
    scores: Sequence[float],
    clusters: Sequence[int],
    *,
    confidence: float = 0.95,
    method: CIMethod = "wilson",
    rounds: int = DEFAULT_BOOTSTRAP_ROUNDS,
    seed: int | None = 0,
    expected: float | None = None,
) -> Proportion:
    """Mean of per-observation scores in [0, 1] with a Wilson or cluster-bootstrap interval."""
    values = np.asarray(scores, dtype=np.float64)
    n = int(values.size)
    if n == 0:
        return Proportion(math.nan, 0.0, 1.0, 0, expected)
    estimate = float(values.mean())
    if method == "wilson":
        # Wilson treats observations as independent trials; several pairs from one ranking are not, so
        # with many pairs per ranking the bootstrap (which resamples rankings) is the honest choice.
        low, high = wilson_interval(float(values.sum()), n, confidence)
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        codes = dense_codes(list(clusters))
        samples = np.array(
            [float(w @ values / w.sum()) for w in resampled_weights(codes, rounds, rng)], dtype=np.float64
        )
        low, high = percentile_interval(samples, confidence)
    else:
        raise ValueError(f"unknown interval method {method!r}")
    return Proportion(estimate, low, high, n, expected)
