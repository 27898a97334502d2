"""The Annotators pages: each annotator's output, speed, skips and agreement (with each peer and with the
consensus of the others), a timing histogram, and their recent rankings and flags.

Agreement figures come from app.quality.annotator_stats; output counts from
app.annotation.activity_repository.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin import charts
from app.admin.common import PER_PAGE, DataFormat, Page, data_response, page_router, rounded
from app.admin.data import RankingView, ranking_views
from app.admin.paging import Pager
from app.annotation import activity_repository as activity
from app.annotation import review_repository as review
from app.auth import repository as auth_repo
from app.deps import DB, AdminUser
from app.errors import NotFound
from app.quality import annotator_stats, cache
from app.quality import gold as gold_stats
from app.web import render

router = page_router()

# The timing histogram's bins double in width (equal widths on its log axis), between these bounds.
TIMING_FLOOR = 0.125  # seconds; faster rankings count in the first bin
TIMING_CEILING = 2.0**15  # about 9 hours; slower ones count in the last bin
TIMING_MIN_BINS = 8


def timing_edges(fastest: float, slowest: float) -> list[float]:
    """Doubling bin edges (powers of two, in seconds) covering [fastest, slowest], at least TIMING_MIN_BINS
    bins, within [TIMING_FLOOR, TIMING_CEILING]."""
    lo_exp = math.floor(math.log2(min(max(fastest, TIMING_FLOOR), TIMING_CEILING / 2)))
    hi_exp = math.floor(math.log2(min(max(slowest, TIMING_FLOOR), TIMING_CEILING / 2))) + 1
    floor_exp, ceiling_exp = round(math.log2(TIMING_FLOOR)), round(math.log2(TIMING_CEILING))
    while hi_exp - lo_exp < TIMING_MIN_BINS:
        # Widen on the slow side first (the long tail), then the fast side.
        if hi_exp < ceiling_exp:
            hi_exp += 1
        elif lo_exp > floor_exp:
            lo_exp -= 1
        else:
            break
    return [2.0**e for e in range(lo_exp, hi_exp + 1)]


@dataclass(frozen=True)
class AnnotatorView:
    row: activity.AnnotatorRow
    skip_rate: float
    agreement: annotator_stats.Agreement | None
    consensus_rate: float
    consensus_sets: int


@dataclass(frozen=True)
class AnnotatorsPage:
    annotators: list[AnnotatorView]
    pager: Pager
    overall: annotator_stats.Agreement
    consensus_window: int
    as_of: dt.datetime | None


def _skip_rate(row: activity.AnnotatorRow) -> float:
    done = row.rankings + row.dropped + row.skips
    return row.skips / done if done else math.nan


def _views(session: Session, rows: Sequence[activity.AnnotatorRow]) -> list[AnnotatorView]:
    agreement = annotator_stats.agreement_summary(session)
    window = annotator_stats.window_stats(session)
    views = []
    for row in rows:
        consensus = window.consensus.get(row.id)
        views.append(
            AnnotatorView(
                row=row,
                skip_rate=_skip_rate(row),
                agreement=agreement.by_annotator.get(row.id),
                consensus_rate=consensus.rate if consensus else math.nan,
                consensus_sets=consensus.sets if consensus else 0,
            )
        )
    return views


def annotators_page(session: Session, page: int) -> AnnotatorsPage:
    """Per annotator: output, speed, skips, and agreement with the others and with the consensus."""
    pager = Pager.of(page, PER_PAGE, activity.count_annotators(session))
    rows = activity.annotator_rows(session, pager.per_page, pager.offset)
    return AnnotatorsPage(
        annotators=_views(session, rows),
        pager=pager,
        overall=annotator_stats.agreement_summary(session).overall,
        consensus_window=annotator_stats.window_stats(session).consensus_sets,
        as_of=cache.computed_at("agreement", "window"),
    )


def annotators_table(session: Session) -> charts.Table:
    """Every annotator's figures (the annotators page as data)."""
    rows = activity.annotator_rows(session, 100_000, 0)
    return charts.Table(
        "annotators",
        (
            "annotator_id",
            "username",
            "rankings",
            "dropped",
            "skips",
            "skip_rate",
            "median_seconds",
            "median_client_seconds",
            "pairwise_agreement",
            "compared_pairs",
            "mean_kendall_tau_b",
            "consensus_agreement",
            "consensus_sets",
        ),
        [
            (
                v.row.id,
                v.row.username,
                v.row.rankings,
                v.row.dropped,
                v.row.skips,
                rounded(v.skip_rate),
                rounded(v.row.median_seconds, 1),
                rounded(v.row.median_client_seconds, 1),
                rounded(v.agreement.rate) if v.agreement else None,
                v.agreement.compared if v.agreement else 0,
                rounded(v.agreement.mean_tau_b) if v.agreement else None,
                rounded(v.consensus_rate),
                v.consensus_sets,
            )
            for v in _views(session, rows)
        ],
    )


@dataclass(frozen=True)
class PeerAgreement:
    annotator_id: int
    username: str
    agreement: annotator_stats.Agreement


@dataclass(frozen=True)
class AnnotatorDetail:
    view: AnnotatorView
    peers: list[PeerAgreement]
    consensus: Any
    histogram: charts.BarChart
    recent: list[RankingView]
    pager: Pager
    flags: list[RankingView]
    trust: gold_stats.Trust | None = None


def _user(session: Session, user_id: int) -> activity.AnnotatorRow:
    row = activity.annotator_row(session, user_id)
    if row is None:
        raise NotFound(f"no annotator {user_id}")
    return row


def _histogram(session: Session, user_id: int) -> tuple[list[float], list[int]]:
    """Bin edges and counts of the annotator's server-measured seconds per ranking."""
    span = activity.timing_range(session, user_id)
    edges = timing_edges(*(span or (10.0, 10.0)))
    counts = dict(activity.timing_histogram(session, user_id, edges)) if span else {}
    return edges, [counts.get(i + 1, 0) for i in range(len(edges) - 1)]


def annotator_timing_table(session: Session, user_id: int) -> charts.Table:
    """An annotator's timing histogram as data: each bin's seconds [from, to) and its rankings."""
    _user(session, user_id)
    edges, counts = _histogram(session, user_id)
    return charts.Table(
        f"annotator-{user_id}-timing",
        ("from_seconds", "to_seconds", "rankings"),
        [(a, b, n) for a, b, n in zip(edges[:-1], edges[1:], counts, strict=True)],
    )


def annotator_detail(session: Session, user_id: int, page: int) -> AnnotatorDetail:
    """One annotator: figures, agreement with each peer, timing histogram, recent rankings and flags."""
    row = _user(session, user_id)
    summary = annotator_stats.agreement_summary(session)
    names = auth_repo.usernames(
        session, [b if a == user_id else a for a, b in summary.by_pair if user_id in (a, b)]
    )
    peers = sorted(
        (
            PeerAgreement(other, names.get(other, f"#{other}"), agreement)
            for (a, b), agreement in summary.by_pair.items()
            if user_id in (a, b)
            for other in [b if a == user_id else a]
        ),
        key=lambda p: (-p.agreement.compared, p.username),
    )
    edges, counts = _histogram(session, user_id)
    filt = review.RankingFilter(annotator_id=user_id, status="all")
    pager = Pager.of(page, 20, review.count_rankings(session, filt))
    recent = review.rankings(session, filt, pager.per_page, pager.offset)
    return AnnotatorDetail(
        view=_views(session, [row])[0],
        peers=peers,
        consensus=annotator_stats.annotator_consensus(session, user_id),
        histogram=charts.log_histogram(edges, counts, title="Seconds per ranking (log scale)"),
        recent=ranking_views(session, recent),
        pager=pager,
        flags=ranking_views(session, review.flags_raised_by(session, user_id, 20)),
        trust=gold_stats.annotator_trust(session, user_id),
    )


@router.get("/annotators", response_class=HTMLResponse)
def annotators_list(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/annotators.html", {"p": annotators_page(db, page)})


@router.get("/annotators.{fmt}")
def annotators_data(db: DB, user: AdminUser, fmt: DataFormat) -> Response:
    return data_response(annotators_table(db), fmt)


@router.get("/annotators/{user_id}", response_class=HTMLResponse)
def annotator_page(request: Request, db: DB, user: AdminUser, user_id: int, page: Page = 1) -> Response:
    return render(request, "admin/annotator.html", {"p": annotator_detail(db, user_id, page)})


@router.get("/annotators/{user_id}/timing.{fmt}")
def annotator_timing_data(db: DB, user: AdminUser, user_id: int, fmt: DataFormat) -> Response:
    return data_response(annotator_timing_table(db, user_id), fmt)
