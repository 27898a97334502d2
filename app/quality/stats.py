"""Public surface of the pure statistics (no database): code outside app.quality imports them from here.

The dashboard's statistics over the database (cached) are in version_stats.py and annotator_stats.py.

Typical flow: build `RankingRecord`s from stored rankings (`RankingRecord.of(row)`, skipping dropped
ones), turn them into `version_outcomes` with a candidate -> model version map, then ask for
`win_rate`/`win_rates`, `bradley_terry` ratings, agreement (`pairwise_agreement`,
`krippendorff_alpha_ordinal`, `consensus_agreement`), `consensus_tiers` for one set, and the biases.
"""

from __future__ import annotations

from app.quality.agreement import (
    AnnotatorPairAgreement,
    ConsensusAgreement,
    PairwiseAgreement,
    consensus_agreement,
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    overlapped_sets,
    pair_agreement,
    pairwise_agreement,
)
from app.quality.bias import earlier_shown_preference, first_shown_win_rate, length_bias
from app.quality.bradley_terry import (
    BASE_RATING,
    DEFAULT_PRIOR,
    ELO_SCALE,
    VersionRating,
    bradley_terry,
    fit_log_strengths,
)
from app.quality.consensus import consensus_strengths, consensus_tiers, mean_tier_consensus
from app.quality.intervals import Proportion, wilson_interval
from app.quality.outcomes import AllBadPolicy, VersionOutcome, version_outcomes
from app.quality.records import RankingRecord, mid_ranks
from app.quality.winrate import WinRate, win_rate, win_rates

__all__ = [
    "BASE_RATING",
    "DEFAULT_PRIOR",
    "ELO_SCALE",
    "AllBadPolicy",
    "AnnotatorPairAgreement",
    "ConsensusAgreement",
    "PairwiseAgreement",
    "Proportion",
    "RankingRecord",
    "VersionOutcome",
    "VersionRating",
    "WinRate",
    "bradley_terry",
    "consensus_agreement",
    "consensus_strengths",
    "consensus_tiers",
    "earlier_shown_preference",
    "first_shown_win_rate",
    "fit_log_strengths",
    "kendall_tau_b",
    "krippendorff_alpha_ordinal",
    "length_bias",
    "mean_tier_consensus",
    "mid_ranks",
    "overlapped_sets",
    "pair_agreement",
    "pairwise_agreement",
    "version_outcomes",
    "wilson_interval",
    "win_rate",
    "win_rates",
]
