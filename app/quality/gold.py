"""Trust in annotators: accuracy on gold sets, agreement with the consensus of others, and the weight a
round gives each annotator's rankings.

- Accuracy on gold: pairwise agreement of the annotator's rankings of gold sets with the known ranking
  (`pair_agreement`'s rule: a tie against a strict preference disagrees), pooled over candidate pairs,
  with a 95% interval: the wider of a cluster bootstrap that resamples whole rankings
  (`intervals.proportion`) and Wilson's over the pairs.
- Agreement with the consensus: `annotator_stats` (leave-one-out consensus of the newest overlapped sets)
  with a 95% Wilson interval over its candidate pairs.
- Weight (round config `annotator_weight`): `none` gives everyone 1; `gold` and `agreement` map the rate a
  to max(0, 2a - 1), so a perfect annotator weighs 1, one at chance (a random ranker agrees on about half
  of the pairs) or worse (a reversed ranker) weighs 0. An annotator without such figures weighs 1: nothing
  is known against them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from sqlalchemy.orm import Session

from app.quality import annotator_stats
from app.quality import repository as repo
from app.quality.intervals import CONFIDENCE, Proportion, proportion, wilson_interval
from app.quality.records import RankingRecord, Tiers, preference, tier_of

WeightMode = Literal["none", "gold", "agreement"]
WEIGHT_MODES: tuple[str, ...] = ("none", "gold", "agreement")


def gold_pair_scores(tiers: Tiers, gold: Tiers) -> list[float]:
    """1 or 0 per candidate pair both rankings hold: the ranking puts it in the gold ranking's relation."""
    mine, known = tier_of(tiers), tier_of(gold)
    common = sorted(mine.keys() & known.keys())
    return [float(preference(mine, a, b) == preference(known, a, b)) for a, b in combinations(common, 2)]


def gold_accuracy(
    rankings: Iterable[RankingRecord], gold: Mapping[int, Tiers], *, seed: int = 0
) -> dict[int, Proportion]:
    """Per annotator, the share of candidate pairs of their gold-set rankings that agree with the gold
    ranking, with a 95% interval from a bootstrap over their rankings. Sets without gold are ignored."""
    scores: dict[int, list[float]] = {}
    clusters: dict[int, list[int]] = {}
    for index, r in enumerate(rankings):
        if r.set_id not in gold:
            continue
        pairs = gold_pair_scores(r.tiers, gold[r.set_id])
        scores.setdefault(r.annotator_id, []).extend(pairs)
        clusters.setdefault(r.annotator_id, []).extend([index] * len(pairs))
    return {a: _interval(scores[a], clusters[a], seed) for a in sorted(scores)}


def _interval(scores: list[float], clusters: list[int], seed: int) -> Proportion:
    """The wider of the cluster bootstrap (pairs of one ranking are correlated) and Wilson over the pairs
    (the bootstrap of an annotator who always agrees is [1, 1]; Wilson never has zero width)."""
    boot = proportion(scores, clusters, confidence=CONFIDENCE, method="bootstrap", seed=seed)
    if boot.n == 0:
        return boot
    low, high = wilson_interval(sum(scores), len(scores), CONFIDENCE)
    return Proportion(boot.estimate, min(low, boot.low), max(high, boot.high), boot.n)


def weight_of(rate: Proportion | None) -> float:
    """max(0, 2a - 1) of the rate's estimate; 1 when there is no estimate (nothing known against them)."""
    if rate is None or rate.n == 0 or not math.isfinite(rate.estimate):
        return 1.0
    return min(1.0, max(0.0, 2 * rate.estimate - 1))


@dataclass(frozen=True)
class Trust:
    """One annotator's figures on their dashboard page."""

    gold: Proportion  # pairs of gold-set rankings agreeing with the gold ranking
    gold_rankings: int
    consensus: Proportion  # pairs agreeing with the leave-one-out consensus of others
    gold_weight: float
    agreement_weight: float


def _records(rows: list[object]) -> tuple[list[RankingRecord], dict[int, Tiers]]:
    records = [RankingRecord.of(r) for r in rows]
    gold = {int(r.set_id): r.gold_tiers for r in rows}  # type: ignore[attr-defined]
    return records, gold


def _consensus_rate(agreeing: int, compared: int) -> Proportion:
    if not compared:
        return Proportion(math.nan, 0.0, 1.0, 0)
    low, high = wilson_interval(agreeing, compared, CONFIDENCE)
    return Proportion(agreeing / compared, low, high, compared)


def gold_rates(session: Session, project_id: int | None = None) -> dict[int, Proportion]:
    """Every annotator's accuracy on the gold sets (of one project, or of all)."""
    records, gold = _records(repo.gold_rankings(session, project_id))
    return gold_accuracy(records, gold)


def consensus_rates(session: Session, project_id: int | None = None) -> dict[int, Proportion]:
    """Every annotator's agreement with the consensus of others, on the newest overlapped sets."""
    window = annotator_stats.window_stats(session, project_id)
    return {a: _consensus_rate(c.agreeing, c.compared) for a, c in window.consensus.items()}


def annotator_trust(session: Session, annotator_id: int) -> Trust:
    """One annotator's accuracy on gold and agreement with the consensus, with intervals and weights."""
    records, gold = _records(repo.gold_rankings(session, annotator_id=annotator_id))
    accuracy = gold_accuracy(records, gold).get(annotator_id, Proportion(math.nan, 0.0, 1.0, 0))
    c = annotator_stats.annotator_consensus(session, annotator_id)
    consensus = _consensus_rate(c.agreeing, c.compared)
    return Trust(accuracy, len(records), consensus, weight_of(accuracy), weight_of(consensus))


def annotator_weights(session: Session, project_id: int | None, mode: str) -> dict[int, float]:
    """The weight of each annotator with a figure under `mode` (others weigh 1; `none`: empty)."""
    if mode == "none":
        return {}
    if mode == "gold":
        rates = gold_rates(session, project_id)
    elif mode == "agreement":
        rates = consensus_rates(session, project_id)
    else:
        raise ValueError(f"annotator_weight must be one of {WEIGHT_MODES}, got {mode!r}")
    return {a: round(weight_of(rate), 6) for a, rate in rates.items()}
