"""The statistics' aggregate queries, done by PostgreSQL over every live ranking.

Each query reduces ~100k rankings to a few hundred rows; version_stats.py and annotator_stats.py turn
those into the same statistics the pure modules compute from individual rankings
(tests/quality/test_admin_stats.py checks they agree).
Tiers are JSONB lists of candidate-id lists, best first; a tier's ordinality is its rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.orm import ComparisonSet, Ranking

# One row per (ranking, tier, candidate): the building block of every pairwise statistic. The queries
# below splice in this constant as {members} (never any input: every value is a bound parameter).
_MEMBERS = """
    SELECT r.id AS ranking_id, r.set_id, r.annotator_id, r.all_bad, t.ord AS tier,
           m.value::int AS candidate_id
    FROM rankings r
    CROSS JOIN LATERAL jsonb_array_elements(r.tiers) WITH ORDINALITY AS t(members, ord)
    CROSS JOIN LATERAL jsonb_array_elements_text(t.members) AS m(value)
    WHERE NOT r.dropped AND {in_project}
"""
# Every statistic is of one project's rankings, or of all (a NULL :project_id): the set carries its project.
_IN_PROJECT = (
    "(CAST(:project_id AS integer) IS NULL"
    " OR r.set_id IN (SELECT cs.id FROM comparison_sets cs WHERE cs.project_id = :project_id))"
)
_MEMBERS = _MEMBERS.replace("{in_project}", _IN_PROJECT)


def _big_query(session: Session) -> None:
    """Room for the sorts and hashes of the aggregations below (this transaction only)."""
    session.execute(text("SET LOCAL work_mem = '64MB'"))


def ranking_fingerprint(session: Session) -> tuple[Any, ...]:
    """Changes whenever a ranking is added, removed, dropped or restored: the key of the stats cache."""
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.max(Ranking.id), 0),
            func.count().filter(Ranking.dropped.is_(True)),
            func.coalesce(func.sum(Ranking.id).filter(Ranking.dropped.is_(True)), 0),
            # Ids restart in a truncated table (tests): the newest timestamp tells such states apart.
            func.max(Ranking.created_at),
        ).select_from(Ranking)
    ).one()
    return tuple(row)


@dataclass(frozen=True)
class PairOutcome:
    """One version pair's outcomes inside one ranking (seen from the lower version id)."""

    version_a: int
    version_b: int
    comparisons: int
    score: float  # wins + ties / 2 of version_a
    wins: int
    losses: int


@dataclass(frozen=True)
class OutcomeProfile:
    """A distinct per-ranking pattern of version-pair outcomes and how many rankings show it."""

    pairs: tuple[PairOutcome, ...]
    rankings: int


def version_outcome_profiles(session: Session, project_id: int | None = None) -> list[OutcomeProfile]:
    """Per live ranking, the outcomes of every candidate pair from different versions, grouped by pattern.

    Ties score half a win; an all-bad ranking makes every pair a tie (app.quality's default). Rankings
    with identical patterns are counted, not repeated, so a bootstrap over rankings can resample counts.
    """
    _big_query(session)
    rows = session.execute(
        text(
            """
            WITH members AS ({members}),
            versioned AS (
                SELECT m.ranking_id, m.all_bad, m.tier, c.model_version_id AS version_id
                FROM members m JOIN candidates c ON c.id = m.candidate_id
            ),
            per_ranking AS (
                SELECT a.ranking_id, a.version_id AS version_a, b.version_id AS version_b,
                       count(*) AS n,
                       sum(CASE WHEN a.all_bad OR a.tier = b.tier THEN 0.5
                                WHEN a.tier < b.tier THEN 1.0 ELSE 0.0 END) AS score,
                       count(*) FILTER (WHERE NOT a.all_bad AND a.tier < b.tier) AS wins,
                       count(*) FILTER (WHERE NOT a.all_bad AND a.tier > b.tier) AS losses
                FROM versioned a
                JOIN versioned b ON b.ranking_id = a.ranking_id AND a.version_id < b.version_id
                GROUP BY a.ranking_id, a.version_id, b.version_id
            ),
            profiles AS (
                SELECT jsonb_agg(jsonb_build_array(version_a, version_b, n, score, wins, losses)
                                 ORDER BY version_a, version_b) AS profile
                FROM per_ranking GROUP BY ranking_id
            )
            SELECT profile, count(*) AS rankings FROM profiles GROUP BY profile
            """.replace("{members}", _MEMBERS)
        ),
        {"project_id": project_id},
    ).all()
    return [
        OutcomeProfile(
            pairs=tuple(
                PairOutcome(int(a), int(b), int(n), float(s), int(w), int(lo))
                for a, b, n, s, w, lo in profile
            ),
            rankings=int(count),
        )
        for profile, count in rows
    ]


@dataclass(frozen=True)
class AnnotatorPairTotals:
    """Agreement of two annotators summed over the sets both ranked."""

    annotator_a: int  # < annotator_b
    annotator_b: int
    sets: int
    agreeing: int
    compared: int
    tau_sum: float  # Kendall tau-b summed over the sets where it is defined
    tau_sets: int


def annotator_pair_agreement(session: Session, project_id: int | None = None) -> list[AnnotatorPairTotals]:
    """For every two annotators who ranked a common set: pairwise agreement and Kendall tau-b per set, summed.

    Two rankings agree on a candidate pair when they put it in the same relation (better, worse, tied),
    as app.quality.pair_agreement counts. Tau-b per set is (C - D) / sqrt((n - ties_a)(n - ties_b)) over
    the common candidates, undefined when either ranking ties them all.
    """
    _big_query(session)
    rows = session.execute(
        text(
            """
            WITH shared AS (
                SELECT set_id FROM rankings WHERE NOT dropped GROUP BY set_id HAVING count(*) > 1
            ),
            members AS MATERIALIZED ({members} AND r.set_id IN (SELECT set_id FROM shared)),
            -- Each candidate both rankings of an annotator pair contain, with its tier in each.
            common AS MATERIALIZED (
                SELECT a.set_id, a.annotator_id AS annotator_a, b.annotator_id AS annotator_b,
                       a.candidate_id, a.tier AS tier_a, b.tier AS tier_b
                FROM members a
                JOIN members b ON b.set_id = a.set_id AND b.candidate_id = a.candidate_id
                              AND a.annotator_id < b.annotator_id
            ),
            per_set AS (
                SELECT x.set_id, x.annotator_a, x.annotator_b,
                       count(*) AS compared,
                       count(*) FILTER (WHERE sign(y.tier_a - x.tier_a) = sign(y.tier_b - x.tier_b))
                           AS agreeing,
                       count(*) FILTER (WHERE sign(y.tier_a - x.tier_a) * sign(y.tier_b - x.tier_b) = 1)
                           AS concordant,
                       count(*) FILTER (WHERE sign(y.tier_a - x.tier_a) * sign(y.tier_b - x.tier_b) = -1)
                           AS discordant,
                       count(*) FILTER (WHERE y.tier_a = x.tier_a) AS tied_a,
                       count(*) FILTER (WHERE y.tier_b = x.tier_b) AS tied_b
                FROM common x
                JOIN common y ON y.set_id = x.set_id AND y.annotator_a = x.annotator_a
                             AND y.annotator_b = x.annotator_b AND x.candidate_id < y.candidate_id
                GROUP BY x.set_id, x.annotator_a, x.annotator_b
            ),
            taus AS (
                SELECT *, CASE WHEN tied_a < compared AND tied_b < compared
                               THEN (concordant - discordant)
                                    / sqrt((compared - tied_a)::float8 * (compared - tied_b))
                          END AS tau
                FROM per_set
            )
            SELECT annotator_a, annotator_b, count(*) AS sets, sum(agreeing) AS agreeing,
                   sum(compared) AS compared, coalesce(sum(tau), 0) AS tau_sum, count(tau) AS tau_sets
            FROM taus GROUP BY annotator_a, annotator_b ORDER BY annotator_a, annotator_b
            """.replace("{members}", _MEMBERS)
        ),
        {"project_id": project_id},
    ).all()
    return [
        AnnotatorPairTotals(int(a), int(b), int(s), int(ag), int(c), float(ts), int(tn))
        for a, b, s, ag, c, ts, tn in rows
    ]


@dataclass(frozen=True)
class BiasTotals:
    """Sums behind the three bias statistics (scores in [0, 1] and their counts)."""

    first_shown_score: float
    first_shown_rankings: int
    first_shown_expected: float | None  # mean of 1/K over those rankings
    earlier_shown_wins: int
    earlier_shown_pairs: int
    longer_wins: int
    length_pairs: int


def bias_totals(session: Session, project_id: int | None = None) -> BiasTotals:
    """Position bias over web rankings showing exactly their candidates; length bias over all rankings.

    First shown: 1/t when the first-shown candidate shares the top tier with t-1 others, else 0.
    Earlier shown / longer: over strictly ordered pairs (and, for length, pairs of different lengths).
    """
    _big_query(session)
    row = session.execute(
        text(
            """
            WITH live AS MATERIALIZED (
                SELECT r.id, r.tiers, r.display_order, x.ranked
                FROM rankings r
                CROSS JOIN LATERAL (
                    SELECT array_agg(v::int) AS ranked
                    FROM jsonb_array_elements_text(jsonb_path_query_array(r.tiers, '$[*][*]')) AS e(v)
                ) x
                WHERE NOT r.dropped AND r.source = 'web' AND {in_project}
            ),
            shown AS MATERIALIZED (
                SELECT id, tiers, display_order FROM live
                WHERE cardinality(ranked) >= 2
                  AND cardinality(display_order) = cardinality(ranked)
                  AND display_order @> ranked AND ranked @> display_order
            ),
            first_shown AS (
                SELECT count(*) AS n,
                       coalesce(sum(CASE WHEN (tiers -> 0) @> to_jsonb(display_order[1])
                                         THEN 1.0 / jsonb_array_length(tiers -> 0) ELSE 0 END), 0) AS score,
                       avg(1.0 / cardinality(display_order)) AS expected
                FROM shown
            ),
            members AS ({members}),
            strict_pairs AS (
                SELECT a.ranking_id, a.candidate_id AS chosen, b.candidate_id AS rejected
                FROM members a JOIN members b ON b.ranking_id = a.ranking_id AND a.tier < b.tier
            ),
            earlier AS (
                SELECT count(*) AS n,
                       count(*) FILTER (WHERE array_position(s.display_order, p.chosen)
                                              < array_position(s.display_order, p.rejected)) AS wins
                FROM strict_pairs p JOIN shown s ON s.id = p.ranking_id
            ),
            lens AS MATERIALIZED (SELECT id, char_length(text) AS len FROM candidates),
            lengths AS (
                SELECT count(*) AS n, count(*) FILTER (WHERE lc.len > lr.len) AS wins
                FROM strict_pairs p
                JOIN lens lc ON lc.id = p.chosen
                JOIN lens lr ON lr.id = p.rejected
                WHERE lc.len <> lr.len
            )
            SELECT f.score, f.n, f.expected, e.wins, e.n, l.wins, l.n
            FROM first_shown f, earlier e, lengths l
            """.replace("{members}", _MEMBERS).replace("{in_project}", _IN_PROJECT)
        ),
        {"project_id": project_id},
    ).one()
    score, n, expected, e_wins, e_n, l_wins, l_n = row
    return BiasTotals(
        first_shown_score=float(score),
        first_shown_rankings=int(n),
        first_shown_expected=float(expected) if expected is not None else None,
        earlier_shown_wins=int(e_wins),
        earlier_shown_pairs=int(e_n),
        longer_wins=int(l_wins),
        length_pairs=int(l_n),
    )


def newest_overlapped_sets(
    session: Session, limit: int, offset: int = 0, project_id: int | None = None
) -> list[int]:
    """Ids of the sets (of one project, or of all) with at least two live rankings, newest ranking
    activity first."""
    in_project = (
        []
        if project_id is None
        else [Ranking.set_id.in_(select(ComparisonSet.id).where(ComparisonSet.project_id == project_id))]
    )
    stmt = (
        select(Ranking.set_id)
        .where(Ranking.dropped.is_(False), *in_project)
        .group_by(Ranking.set_id)
        .having(func.count() > 1)
        .order_by(func.max(Ranking.id).desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(stmt))


def newest_overlapped_sets_of(session: Session, annotator_id: int, limit: int) -> list[int]:
    """Ids of the overlapped sets this annotator ranked, newest first."""
    mine = select(Ranking.set_id).where(Ranking.annotator_id == annotator_id, Ranking.dropped.is_(False))
    stmt = (
        select(Ranking.set_id)
        .where(Ranking.dropped.is_(False), Ranking.set_id.in_(mine))
        .group_by(Ranking.set_id)
        .having(func.count() > 1)
        .order_by(func.max(Ranking.id).desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def count_overlapped_sets(session: Session) -> int:
    """How many sets have at least two live rankings."""
    sub = (
        select(Ranking.set_id)
        .where(Ranking.dropped.is_(False))
        .group_by(Ranking.set_id)
        .having(func.count() > 1)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(sub)) or 0)


def live_rankings_of_sets(session: Session, set_ids: Sequence[int]) -> list[Any]:
    """The live rankings of these sets (set, annotator, tiers, all-bad, display order)."""
    if not set_ids:
        return []
    stmt = (
        select(
            Ranking.id,
            Ranking.set_id,
            Ranking.annotator_id,
            Ranking.tiers,
            Ranking.all_bad,
            Ranking.display_order,
        )
        .where(Ranking.set_id.in_(list(set_ids)), Ranking.dropped.is_(False))
        .order_by(Ranking.set_id, Ranking.annotator_id)
    )
    return list(session.execute(stmt).all())


def gold_rankings(
    session: Session, project_id: int | None = None, annotator_id: int | None = None
) -> list[Any]:
    """Live rankings of gold sets (of one project / annotator, or all), each with its set's gold tiers
    (set_id, annotator_id, tiers, all_bad, display_order, gold_tiers)."""
    stmt = (
        select(
            Ranking.id,
            Ranking.set_id,
            Ranking.annotator_id,
            Ranking.tiers,
            Ranking.all_bad,
            Ranking.display_order,
            ComparisonSet.gold_tiers,
        )
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .where(ComparisonSet.gold_tiers.is_not(None), Ranking.dropped.is_(False))
        .order_by(Ranking.id)
    )
    if project_id is not None:
        stmt = stmt.where(ComparisonSet.project_id == project_id)
    if annotator_id is not None:
        stmt = stmt.where(Ranking.annotator_id == annotator_id)
    return list(session.execute(stmt).all())
