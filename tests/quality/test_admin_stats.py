"""The dashboard's SQL aggregates give app.quality's numbers on the same rankings."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from app.orm import Candidate, Ranking
from app.quality import annotator_stats, cache, version_stats
from app.quality.stats import (
    RankingRecord,
    bradley_terry,
    earlier_shown_preference,
    first_shown_win_rate,
    length_bias,
    pairwise_agreement,
    version_outcomes,
    win_rate,
)
from tests.admin_data import random_loop

pytestmark = pytest.mark.usefixtures("fresh_stats")


def _live_records(db) -> list[RankingRecord]:
    rows = db.scalars(select(Ranking).where(Ranking.dropped.is_(False)).order_by(Ranking.id)).all()
    return [RankingRecord.of(r) for r in rows]


def _version_of(db) -> dict[int, int]:
    return {cid: vid for cid, vid in db.execute(select(Candidate.id, Candidate.model_version_id))}


def test_human_win_rates_equal_app_quality(db):
    loop = random_loop(db, seed=1, versions=4, sets=40)
    outcomes = version_outcomes(_live_records(db), _version_of(db))
    summary = version_stats.outcome_summary(db)
    met = 0
    for a in loop.versions:
        for b in loop.versions:
            if a.id == b.id:
                continue
            expected = win_rate(outcomes, a.id, b.id)
            got = version_stats.human_win_rate(summary, a.id, b.id)
            if expected.comparisons == 0:
                assert got is None
                continue
            met += 1
            assert got is not None
            assert (got.wins, got.losses, got.ties, got.comparisons, got.rankings) == (
                expected.wins,
                expected.losses,
                expected.ties,
                expected.comparisons,
                expected.rankings,
            )
            assert got.rate == pytest.approx(expected.rate, abs=1e-12)
            assert got.low == pytest.approx(expected.low, abs=1e-12)
            assert got.high == pytest.approx(expected.high, abs=1e-12)
    assert met >= 6  # the random loop let most version pairs meet


def test_bradley_terry_ratings_equal_app_quality(db):
    random_loop(db, seed=2, versions=4, sets=60, quality=[0.0, 0.6, 1.2, 1.8])
    outcomes = version_outcomes(_live_records(db), _version_of(db))
    expected = bradley_terry(outcomes, rounds=1000, seed=0)
    got = version_stats.bradley_terry_ratings(version_stats.outcome_summary(db), rounds=1000, seed=0)
    assert [r.version for r in got.ratings] == [r.version for r in expected]
    for g, e in zip(got.ratings, expected, strict=True):
        assert g.rating == pytest.approx(e.rating, abs=1e-6)
        assert (g.comparisons, g.component) == (e.comparisons, e.component)
        # Same bootstrap distribution, other random draws: the interval ends agree to a fraction of
        # the interval's width.
        width = e.high - e.low
        assert abs(g.low - e.low) < 0.2 * width and abs(g.high - e.high) < 0.2 * width
        assert g.low <= g.rating <= g.high
    # Higher latent quality, higher rating: the ratings order the lineage.
    assert expected[0].rating > expected[-1].rating


def test_pairwise_agreement_and_tau_equal_app_quality(db):
    loop = random_loop(db, seed=3, versions=3, sets=40, annotators=4)
    records = _live_records(db)
    expected = pairwise_agreement(records)
    summary = annotator_stats.agreement_summary(db)
    assert (summary.overall.agreeing, summary.overall.compared) == (expected.agreeing, expected.compared)
    assert summary.overall.rate == pytest.approx(expected.rate)
    assert summary.overall.mean_tau_b == pytest.approx(expected.mean_tau_b)
    for person in loop.annotators:
        mine = [p for p in expected.pairs if person.id in (p.annotator_a, p.annotator_b)]
        if not mine:
            assert person.id not in summary.by_annotator
            continue
        got = summary.by_annotator[person.id]
        assert got.agreeing == sum(p.agreeing for p in mine)
        assert got.compared == sum(p.compared for p in mine)
        taus = [p.tau_b for p in mine if not math.isnan(p.tau_b)]
        assert got.mean_tau_b == pytest.approx(sum(taus) / len(taus))


def test_bias_rates_equal_app_quality(db):
    random_loop(db, seed=4, versions=3, sets=50)
    records = _live_records(db)
    web = [
        RankingRecord.of(r)
        for r in db.scalars(
            select(Ranking).where(Ranking.dropped.is_(False), Ranking.source == "web").order_by(Ranking.id)
        )
    ]
    lengths = {c.id: len(c.text) for c in db.scalars(select(Candidate))}
    expected = {
        "first_shown": first_shown_win_rate(web),
        "earlier_shown": earlier_shown_preference(web),
        "longer": length_bias(records, lengths),
    }
    got = {r.name: r for r in annotator_stats.bias_rates(db)}
    for name, e in expected.items():
        g = got[name]
        assert g.n == e.n and g.n > 0, name
        assert g.rate == pytest.approx(e.estimate), name
        assert (g.low, g.high) == (pytest.approx(e.low), pytest.approx(e.high)), name
        assert g.expected == pytest.approx(e.expected), name


def test_the_cache_is_recomputed_when_a_ranking_is_dropped(db, monkeypatch):
    # The synchronous path under test: on a loaded machine the first computation can exceed the bound, and
    # the cache would then (rightly) serve the old figures while a background thread recomputes.
    monkeypatch.setattr(cache, "SYNC_RECOMPUTE_SECONDS", float("inf"))
    loop = random_loop(db, seed=5, versions=2, sets=10, annotators=2)
    first = version_stats.outcome_summary(db)
    assert version_stats.outcome_summary(db) is first  # unchanged rankings: the cached object
    live = next(r for r in loop.rankings if not r.dropped and not r.all_bad)
    live.dropped = True
    db.flush()
    second = version_stats.outcome_summary(db)
    assert second is not first
    assert second.comparisons.sum() < first.comparisons.sum()


def test_window_stats_run_app_quality_on_the_newest_sets(db):
    random_loop(db, seed=6, versions=2, sets=20, annotators=3)
    window = annotator_stats.window_stats(db)
    records = _live_records(db)
    from app.quality.stats import consensus_agreement, krippendorff_alpha_ordinal

    assert window.alpha == pytest.approx(krippendorff_alpha_ordinal(records))
    expected = {c.annotator_id: c for c in consensus_agreement(records)}
    assert set(window.consensus) == set(expected)
    for annotator, c in expected.items():
        assert window.consensus[annotator].rate == pytest.approx(c.rate, nan_ok=True)


def test_expensive_statistics_are_served_stale_while_one_thread_recomputes(clean_db, monkeypatch):
    import time

    from app.db import session_scope

    with session_scope() as s:
        loop = random_loop(s, seed=7, versions=2, sets=10, annotators=2)
        victim = next(r.id for r in loop.rankings if not r.dropped and not r.all_bad)
    # Pretend every statistic is expensive: none is recomputed while a request waits.
    monkeypatch.setattr(cache, "SYNC_RECOMPUTE_SECONDS", 0.0)
    with session_scope() as s:
        first = version_stats.outcome_summary(s)
        s.get(Ranking, victim).dropped = True
    with session_scope() as s:
        assert version_stats.outcome_summary(s) is first  # the previous figures, at once
    deadline = time.monotonic() + 30
    while True:
        with session_scope() as s:
            latest = version_stats.outcome_summary(s)
        if latest is not first:
            break
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.05)
    assert latest.comparisons.sum() < first.comparisons.sum()
    assert cache.pending_refreshes() == 0
    with session_scope() as s:
        assert version_stats.outcome_summary(s) is latest  # up to date: served from the cache
