"""Dashboard statistics: SQL aggregates (stats_repository) turned into app.quality's numbers, cached.

The expensive aggregates depend only on the live rankings, so each is cached per process under a
fingerprint of the rankings table (count, newest id and time, dropped ones): nothing is recomputed until a
ranking is added, dropped or restored, and then a statistic that is slow to compute (about a second at
100k rankings) is served from the previous state while one background thread recomputes it.

Win-rates use app.quality's Wilson interval on the SQL totals; Bradley-Terry ratings fit app.quality's
penalised likelihood on them, and their bootstrap resamples whole rankings like app.quality.bradley_terry
does, drawing how many times each distinct per-ranking pattern is picked (a multinomial over patterns: the
same distribution as drawing rankings one by one, at the cost of the patterns instead of the rankings).
Agreement statistics that need per-set fits (Krippendorff's alpha, agreement with the leave-one-out
consensus) run app.quality on the newest overlapped sets only.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.orm import Session

from app.admin import stats_repository as repo
from app.quality.stats import (
    BASE_RATING,
    DEFAULT_PRIOR,
    ELO_SCALE,
    ConsensusAgreement,
    RankingRecord,
    consensus_agreement,
    fit_log_strengths,
    krippendorff_alpha_ordinal,
    wilson_interval,
)

BOOTSTRAP_ROUNDS = 1000
CONFIDENCE = 0.95
# Sets whose rankings go through app.quality's per-set fits (alpha, consensus agreement).
ALPHA_WINDOW = 2000
CONSENSUS_WINDOW = 300

T = TypeVar("T")
# A statistic that took longer than this to compute is not recomputed while a request waits: the request
# gets the previous figures (their time is on the page) and one background thread brings them up to date.
SYNC_RECOMPUTE_SECONDS = 1.0

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    fingerprint: tuple[Any, ...]
    value: Any
    seconds: float  # what computing it cost
    computed_at: float
    refreshing: bool = False


_cache: dict[str, _Entry] = {}
_cache_lock = threading.Lock()
_key_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)


def clear_cache() -> None:
    """Forget every cached statistic (tests; after bulk changes outside the app)."""
    with _cache_lock:
        _cache.clear()


def cached(session: Session, key: str, compute: Callable[[Session], T]) -> T:
    """`compute(session)` once per state of the rankings table (per process); concurrent misses compute once.

    Cheap statistics are recomputed as soon as the rankings change; expensive ones are served from the
    previous state while a background thread recomputes them (stale-while-revalidate).
    """
    fingerprint = repo.ranking_fingerprint(session)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry.value
        if entry is not None and entry.seconds >= SYNC_RECOMPUTE_SECONDS:
            if not entry.refreshing:
                entry.refreshing = True
                threading.Thread(
                    target=_refresh, args=(key, compute), daemon=True, name=f"stats-{key}"
                ).start()
            return entry.value
    with _key_locks[key]:
        with _cache_lock:
            entry = _cache.get(key)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry.value
        return _store(key, fingerprint, session, compute)


def _store(key: str, fingerprint: tuple[Any, ...], session: Session, compute: Callable[[Session], T]) -> T:
    started = time.perf_counter()
    value = compute(session)
    with _cache_lock:
        _cache[key] = _Entry(fingerprint, value, time.perf_counter() - started, time.time())
    return value


def _refresh(key: str, compute: Callable[[Session], Any]) -> None:
    """Recompute one statistic on its own session (the request that triggered it has moved on)."""
    from app.db import session_scope

    try:
        with _key_locks[key], session_scope() as session:
            _store(key, repo.ranking_fingerprint(session), session, compute)  # a new entry: not refreshing
    except Exception:
        log.exception("recomputing dashboard statistic %s failed; the previous figures stay", key)
        with _cache_lock:
            entry = _cache.get(key)
            if entry is not None:
                entry.refreshing = False


def pending_refreshes() -> int:
    """How many background recomputations are running (a benchmark waits for them before it exits)."""
    with _cache_lock:
        return sum(1 for entry in _cache.values() if entry.refreshing)


def computed_at(*keys: str) -> dt.datetime | None:
    """When the oldest of these cached statistics was computed (pages say how fresh their figures are)."""
    with _cache_lock:
        times = [_cache[k].computed_at for k in keys if k in _cache]
    return dt.datetime.fromtimestamp(min(times), dt.UTC) if times else None


# --- version outcomes: human win-rates and Bradley-Terry ----------------------------------------------


@dataclass(frozen=True)
class HumanWinRate:
    """Blind human win-rate of version_a over version_b; ties count half (app.quality.win_rate, Wilson)."""

    version_a: int
    version_b: int
    wins: int
    losses: int
    ties: int
    comparisons: int
    rankings: int
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class OutcomeSummary:
    """Every version pair's totals plus the per-ranking patterns a bootstrap needs."""

    pairs: list[tuple[int, int]]  # (lower id, higher id), sorted
    comparisons: np.ndarray  # per pair
    score: np.ndarray  # per pair: wins + ties / 2 of the lower id
    wins: np.ndarray
    losses: np.ndarray
    rankings: np.ndarray  # per pair: rankings that compared the pair
    pattern_counts: np.ndarray  # per pattern: how many rankings show it
    pattern_score: np.ndarray  # patterns x pairs
    pattern_comparisons: np.ndarray  # patterns x pairs
    computed_at: float
    total_rankings: int  # rankings with at least one cross-version pair


def _summarise(profiles: list[repo.OutcomeProfile]) -> OutcomeSummary:
    """Totals per version pair and the pattern matrices, from the SQL profiles."""
    pairs = sorted({(p.version_a, p.version_b) for prof in profiles for p in prof.pairs})
    column = {pair: j for j, pair in enumerate(pairs)}
    g, n = len(profiles), len(pairs)
    score = np.zeros((g, n))
    comparisons = np.zeros((g, n))
    wins = np.zeros((g, n))
    losses = np.zeros((g, n))
    present = np.zeros((g, n))
    counts = np.zeros(g)
    for i, prof in enumerate(profiles):
        counts[i] = prof.rankings
        for p in prof.pairs:
            j = column[(p.version_a, p.version_b)]
            score[i, j] = p.score
            comparisons[i, j] = p.comparisons
            wins[i, j] = p.wins
            losses[i, j] = p.losses
            present[i, j] = 1
    return OutcomeSummary(
        pairs=pairs,
        comparisons=counts @ comparisons if g else np.zeros(n),
        score=counts @ score if g else np.zeros(n),
        wins=counts @ wins if g else np.zeros(n),
        losses=counts @ losses if g else np.zeros(n),
        rankings=counts @ present if g else np.zeros(n),
        pattern_counts=counts,
        pattern_score=score,
        pattern_comparisons=comparisons,
        computed_at=time.time(),
        total_rankings=int(counts.sum()),
    )


def outcome_summary(session: Session) -> OutcomeSummary:
    """Version-pair totals over every live ranking (cached per rankings state)."""
    return cached(session, "outcomes", lambda s: _summarise(repo.version_outcome_profiles(s)))


def human_win_rate(summary: OutcomeSummary, version_a: int, version_b: int) -> HumanWinRate | None:
    """Version a's human win-rate against version b with a 95% Wilson interval; None if they never met."""
    low_v, high_v = min(version_a, version_b), max(version_a, version_b)
    try:
        j = summary.pairs.index((low_v, high_v))
    except ValueError:
        return None
    n = int(summary.comparisons[j])
    score = float(summary.score[j])
    wins, losses = int(summary.wins[j]), int(summary.losses[j])
    if version_a != low_v:
        # Totals are kept from the lower id's side; the other side wins what it lost.
        score, wins, losses = n - score, losses, wins
    low, high = wilson_interval(score, n, CONFIDENCE)
    return HumanWinRate(
        version_a=version_a,
        version_b=version_b,
        wins=wins,
        losses=losses,
        ties=n - wins - losses,
        comparisons=n,
        rankings=int(summary.rankings[j]),
        rate=score / n if n else math.nan,
        low=low,
        high=high,
    )


@dataclass(frozen=True)
class Rating:
    """A version's Bradley-Terry rating (Elo scale) with its bootstrap interval."""

    version: int
    rating: float
    low: float
    high: float
    comparisons: int
    component: int  # versions in different components never met, even indirectly: not comparable


@dataclass(frozen=True)
class Ratings:
    ratings: list[Rating]  # best first
    rankings: int
    rounds: int
    computed_at: float


def bradley_terry_ratings(
    summary: OutcomeSummary, *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0, prior: float = DEFAULT_PRIOR
) -> Ratings:
    """Ratings of every version that met another, like app.quality.bradley_terry (ranking bootstrap)."""
    if not summary.pairs:
        return Ratings([], 0, rounds, time.time())
    versions = sorted({v for pair in summary.pairs for v in pair})
    index = {v: i for i, v in enumerate(versions)}
    first = np.array([index[a] for a, _ in summary.pairs], dtype=np.int64)
    second = np.array([index[b] for _, b in summary.pairs], dtype=np.int64)

    def fit(won: np.ndarray, met: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        return fit_log_strengths(len(versions), first, second, won, met, prior=prior, start=start)

    def to_ratings(theta: np.ndarray) -> np.ndarray:
        return BASE_RATING + ELO_SCALE * (theta - theta.mean())

    theta = fit(summary.score.astype(np.float64), summary.comparisons.astype(np.float64))
    point = to_ratings(theta)
    rng = np.random.default_rng(seed)
    total = int(summary.pattern_counts.sum())
    probabilities = summary.pattern_counts / total
    samples = np.empty((rounds, len(versions)))
    for r in range(rounds):
        drawn = rng.multinomial(total, probabilities).astype(np.float64)
        samples[r] = to_ratings(
            fit(drawn @ summary.pattern_score, drawn @ summary.pattern_comparisons, theta)
        )
    alpha = 1 - CONFIDENCE
    comparisons = np.bincount(first, summary.comparisons, len(versions)) + np.bincount(
        second, summary.comparisons, len(versions)
    )
    components = _components(len(versions), first, second)
    rows = []
    for i, version in enumerate(versions):
        if rounds:
            low, high = (float(q) for q in np.quantile(samples[:, i], [alpha / 2, 1 - alpha / 2]))
        else:
            low = high = float(point[i])
        rows.append(
            Rating(version, float(point[i]), low, high, int(comparisons[i]), components[i]),
        )
    rows.sort(key=lambda r: (-r.rating, r.version))
    return Ratings(rows, summary.total_rankings, rounds, time.time())


def _components(n: int, first: np.ndarray, second: np.ndarray) -> list[int]:
    """Connected-component label per version, numbered in order of the lowest index."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        parent[root(a)] = root(b)
    labels: dict[int, int] = {}
    return [labels.setdefault(root(i), len(labels)) for i in range(n)]


def leaderboard_ratings(session: Session) -> Ratings:
    """Bradley-Terry ratings over every live ranking (cached per rankings state)."""
    return cached(session, "ratings", lambda s: bradley_terry_ratings(outcome_summary(s)))


# --- annotator agreement -------------------------------------------------------------------------------


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


def agreement_summary(session: Session) -> AgreementSummary:
    """Agreement overall, per annotator (with everyone else) and per annotator pair (cached)."""

    def compute(session: Session) -> AgreementSummary:
        rows = repo.annotator_pair_agreement(session)
        mine: dict[int, list[repo.AnnotatorPairTotals]] = defaultdict(list)
        for r in rows:
            mine[r.annotator_a].append(r)
            mine[r.annotator_b].append(r)
        return AgreementSummary(
            overall=_agreement(rows),
            by_annotator={a: _agreement(rs) for a, rs in mine.items()},
            by_pair={(r.annotator_a, r.annotator_b): _agreement([r]) for r in rows},
        )

    return cached(session, "agreement", compute)


def _records(rows: list[Any]) -> list[RankingRecord]:
    return [RankingRecord.of(r) for r in rows]


@dataclass(frozen=True)
class WindowStats:
    sets: int  # overlapped sets in the window
    alpha: float  # Krippendorff's alpha (ordinal) on ALPHA_WINDOW sets
    alpha_sets: int
    consensus: dict[int, ConsensusAgreement]  # per annotator, on CONSENSUS_WINDOW sets
    consensus_sets: int


def window_stats(session: Session) -> WindowStats:
    """Krippendorff's alpha and agreement with the leave-one-out consensus on the newest overlapped sets."""

    def compute(session: Session) -> WindowStats:
        alpha_sets = repo.newest_overlapped_sets(session, ALPHA_WINDOW)
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

    return cached(session, "window", compute)


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


# --- biases -----------------------------------------------------------------------------------------


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


def bias_rates(session: Session) -> list[Rate]:
    """First-shown win rate, earlier-shown preference and longer-wins rate (cached)."""

    def compute(session: Session) -> list[Rate]:
        t = repo.bias_totals(session)
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

    return cached(session, "bias", compute)
