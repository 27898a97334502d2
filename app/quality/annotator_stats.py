"""Statistics of annotators over the live rankings: agreement, agreement with the consensus, biases.

Pairwise agreement and Kendall tau-b come from SQL totals (repository.annotator_pair_agreement) over every
overlapped set; statistics that need per-set fits (Krippendorff's alpha, agreement with the leave-one-out
consensus) run app.quality's pure functions on the newest overlapped sets only. Biases use the SQL totals
of repository.bias_totals with Wilson intervals. Results are cached per rankings state (cache.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.quality import repository as repo
from app.quality.agreement import ConsensusAgreement, consensus_agreement, krippendorff_alpha_ordinal
from app.quality.cache import cached
from app.quality.intervals import CONFIDENCE, wilson_interval
from app.quality.records import RankingRecord

# Sets whose rankings go through app.quality's per-set fits (alpha, consensus agreement).
ALPHA_WINDOW = 2000
CONSENSUS_WINDOW = 300


@dataclass(frozen=True)
class Agreement:
    """Pairwise agreement pooled over candidate pairs, and the mean Kendall tau-b over ranking pairs."""

    sets: int  # (set, annotator pair) combinations
    agreeing: int
    compared: int
    rate: float
    mean_tau_b: float


def _agreement(rows: list[repo.AnnotatorPairTotals]) -> Agreement:
    agreeing = sum(r.agreeing for r in rows)
    compared = sum(r.compared for r in rows)
    tau_sets = sum(r.tau_sets for r in rows)
    return Agreement(
        sets=sum(r.sets for r in rows),
        agreeing=agreeing,
        compared=compared,
        rate=agreeing / compared if compared else math.nan,
        mean_tau_b=sum(r.tau_sum for r in rows) / tau_sets if tau_sets else math.nan,
    )


@dataclass(frozen=True)
class AgreementSummary:
    overall: Agreement
    by_annotator: dict[int, Agreement]
    by_pair: dict[tuple[int, int], Agreement]


def _key(name: str, project_id: int | None) -> str:
    return name if project_id is None else f"{name}:project:{project_id}"


def agreement_summary(session: Session, project_id: int | None = None) -> AgreementSummary:
    """Agreement overall, per annotator (with everyone else) and per annotator pair, over one project's
    rankings or all (cached)."""

    def compute(session: Session) -> AgreementSummary:
        rows = repo.annotator_pair_agreement(session, project_id)
        mine: dict[int, list[repo.AnnotatorPairTotals]] = defaultdict(list)
        for r in rows:
            mine[r.annotator_a].append(r)
            mine[r.annotator_b].append(r)
        return AgreementSummary(
            overall=_agreement(rows),
            by_annotator={a: _agreement(rs) for a, rs in mine.items()},
            by_pair={(r.annotator_a, r.annotator_b): _agreement([r]) for r in rows},
        )

    return cached(session, _key("agreement", project_id), compute)


def _records(rows: list[Any]) -> list[RankingRecord]:
    return [RankingRecord.of(r) for r in rows]


@dataclass(frozen=True)
class WindowStats:
    sets: int  # overlapped sets in the window
    alpha: float  # Krippendorff's alpha (ordinal) on ALPHA_WINDOW sets
    alpha_sets: int
    consensus: dict[int, ConsensusAgreement]  # per annotator, on CONSENSUS_WINDOW sets
    consensus_sets: int


def window_stats(session: Session, project_id: int | None = None) -> WindowStats:
    """Krippendorff's alpha and agreement with the leave-one-out consensus on the newest overlapped sets
    (of one project, or of all)."""

    def compute(session: Session) -> WindowStats:
        alpha_sets = repo.newest_overlapped_sets(session, ALPHA_WINDOW, project_id=project_id)
        records = _records(repo.live_rankings_of_sets(session, alpha_sets))
        consensus_ids = set(alpha_sets[:CONSENSUS_WINDOW])
        consensus_records = [r for r in records if r.set_id in consensus_ids]
        return WindowStats(
            sets=len(alpha_sets),
            alpha=krippendorff_alpha_ordinal(records) if records else math.nan,
            alpha_sets=len(alpha_sets),
            consensus={c.annotator_id: c for c in consensus_agreement(consensus_records)},
            consensus_sets=len(consensus_ids),
        )

    return cached(session, _key("window", project_id), compute)


def annotator_consensus(
    session: Session, annotator_id: int, limit: int = CONSENSUS_WINDOW
) -> ConsensusAgreement:
    """One annotator's agreement with the consensus of the others on their newest overlapped sets."""

    def compute(session: Session) -> ConsensusAgreement:
        set_ids = repo.newest_overlapped_sets_of(session, annotator_id, limit)
        records = _records(repo.live_rankings_of_sets(session, set_ids))
        for c in consensus_agreement(records):
            if c.annotator_id == annotator_id:
                return c
        return ConsensusAgreement(annotator_id, 0, 0, 0, math.nan, math.nan)

    return cached(session, f"consensus:{annotator_id}", compute)


# --- biases (how annotators behave) ------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A rate with its 95% Wilson interval, its count and the rate expected without bias."""

    name: str
    label: str
    successes: float
    n: int
    rate: float
    low: float
    high: float
    expected: float | None


def _rate(name: str, label: str, successes: float, n: int, expected: float | None) -> Rate:
    low, high = wilson_interval(successes, n, CONFIDENCE)
    return Rate(name, label, successes, n, successes / n if n else math.nan, low, high, expected)


def bias_rates(session: Session, project_id: int | None = None) -> list[Rate]:
    """First-shown win rate, earlier-shown preference and longer-wins rate, of one project's rankings or of
    all (cached)."""

    def compute(session: Session) -> list[Rate]:
        t = repo.bias_totals(session, project_id)
        return [
            _rate(
                "first_shown",
                "first-shown candidate ranked best",
                t.first_shown_score,
                t.first_shown_rankings,
                t.first_shown_expected,
            ),
            _rate(
                "earlier_shown",
                "earlier-shown candidate of a pair wins",
                t.earlier_shown_wins,
                t.earlier_shown_pairs,
                0.5,
            ),
            _rate("longer", "longer candidate of a pair wins", t.longer_wins, t.length_pairs, 0.5),
        ]

    return cached(session, _key("bias", project_id), compute)
