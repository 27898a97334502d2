"""Queries on the reward models' stored candidate scores (reward_scores) for app.quality.reward_signals."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class PredictedTotals:
    """How a reward model orders one version's candidates against another's in the sets holding both."""

    version_id: int
    reward_version_id: int  # the newest reward model that scored the version's candidates
    pairs: int  # (version candidate, other candidate) pairs in one set, both scored
    score: float  # pairs the reward model orders version > other; equal scores count half


# Per version: the newest reward model that scored its candidates; then every (its candidate, other
# version's candidate) pair of one comparison set, both scored by that reward model.
_PREDICTED = text(
    """
    WITH r AS (
        SELECT c.model_version_id AS v, max(rs.reward_version_id) AS rid
        FROM reward_scores rs JOIN candidates c ON c.id = rs.candidate_id
        WHERE c.model_version_id <> :against
        GROUP BY c.model_version_id
    )
    SELECT r.v, r.rid, count(*) AS pairs,
           sum(CASE WHEN sa.score > sb.score THEN 1.0 WHEN sa.score = sb.score THEN 0.5 ELSE 0.0 END)
    FROM r
    JOIN candidates ca ON ca.model_version_id = r.v
    JOIN reward_scores sa ON sa.candidate_id = ca.id AND sa.reward_version_id = r.rid
    JOIN comparison_set_items ia ON ia.candidate_id = ca.id
    JOIN comparison_set_items ib ON ib.set_id = ia.set_id
    JOIN candidates cb ON cb.id = ib.candidate_id AND cb.model_version_id = :against
    JOIN reward_scores sb ON sb.candidate_id = cb.id AND sb.reward_version_id = r.rid
    WHERE (CAST(:version AS integer) IS NULL OR r.v = :version)
    GROUP BY r.v, r.rid
    """
)


def predicted_totals(
    session: Session, against_id: int, version_id: int | None = None
) -> list[PredictedTotals]:
    """Every version's (or one version's) reward-predicted totals against `against_id`."""
    rows = session.execute(_PREDICTED, {"against": against_id, "version": version_id}).all()
    return [PredictedTotals(int(v), int(rid), int(n), float(score or 0)) for v, rid, n, score in rows]


@dataclass(frozen=True)
class ScoredRanking:
    """A live ranking of a set whose candidates a reward model scored, with those scores."""

    reward_version_id: int
    ranking_id: int
    tiers: list[list[int]]
    scores: dict[int, float]  # candidate id -> score


# Rankings stored after the reward model's data snapshot (fresh: it never trained on them) of sets whose
# candidates it scored, one row per scored candidate.
_SCORED_RANKINGS = text(
    """
    SELECT rs.reward_version_id, r.id, r.tiers, rs.candidate_id, rs.score
    FROM rankings r
    JOIN comparison_set_items i ON i.set_id = r.set_id
    JOIN reward_scores rs ON rs.candidate_id = i.candidate_id
    JOIN model_versions mv ON mv.id = rs.reward_version_id
    LEFT JOIN data_snapshots ds ON ds.id = mv.data_snapshot_id
    WHERE NOT r.dropped AND r.id > coalesce(ds.max_ranking_id, 0)
    ORDER BY rs.reward_version_id, r.id
    """
)


def scored_rankings(session: Session) -> list[ScoredRanking]:
    """Every fresh ranking of a scored set, per reward model that scored it."""
    out: list[ScoredRanking] = []
    for rid, ranking_id, tiers, candidate_id, score in session.execute(_SCORED_RANKINGS):
        if not out or (out[-1].reward_version_id, out[-1].ranking_id) != (rid, ranking_id):
            out.append(ScoredRanking(int(rid), int(ranking_id), tiers, {}))
        out[-1].scores[int(candidate_id)] = float(score)
    return out
