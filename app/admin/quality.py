"""The Quality pages: inter-annotator agreement, Krippendorff's alpha, position and length bias, and the
overlapped sets with each annotator's ranking beside their consensus and training's merge.

The figures come from app.quality.annotator_stats (cached); consensus_tiers and mean_tier_consensus are
app.quality.stats's pure functions, run here on one page of sets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin import charts
from app.admin.common import DataFormat, Page, data_response, letter, page_router, project_context, rounded
from app.admin.paging import Pager
from app.annotation import review_repository as review
from app.auth import repository as auth_repo
from app.deps import DB, AdminUser, ProjectParam
from app.quality import annotator_stats, cache
from app.quality import repository as quality_repo
from app.quality.stats import RankingRecord, consensus_tiers, mean_tier_consensus
from app.web import render

router = page_router()


@dataclass(frozen=True)
class QualityPage:
    agreement: annotator_stats.Agreement
    window: annotator_stats.WindowStats
    biases: list[annotator_stats.Rate]
    bias_chart: charts.IntervalChart
    pairs: list[PeerPair]
    overlapped_sets: int
    as_of: dt.datetime | None


@dataclass(frozen=True)
class PeerPair:
    a: str
    b: str
    agreement: annotator_stats.Agreement


def quality_page(session: Session, project_id: int | None = None) -> QualityPage:
    """Inter-annotator agreement, Krippendorff's alpha, position and length bias (of one project's rankings,
    or of all)."""
    summary = annotator_stats.agreement_summary(session, project_id)
    names = auth_repo.usernames(session, sorted({a for pair in summary.by_pair for a in pair}))
    pairs = sorted(
        (
            PeerPair(names.get(a, f"#{a}"), names.get(b, f"#{b}"), ag)
            for (a, b), ag in summary.by_pair.items()
        ),
        key=lambda p: (-p.agreement.compared, p.a, p.b),
    )
    biases = annotator_stats.bias_rates(session, project_id)
    return QualityPage(
        agreement=summary.overall,
        window=annotator_stats.window_stats(session, project_id),
        biases=biases,
        bias_chart=charts.interval_chart(
            [(b.label, b.rate, b.low, b.high) for b in biases],
            title="Observed rate with 95% interval; expected without bias marked",
            value_format="{:.3f}",
            bounds=(0.0, 1.0),
            expected=[b.expected for b in biases],
        ),
        pairs=pairs[:20],
        overlapped_sets=quality_repo.count_overlapped_sets(session),
        as_of=cache.computed_at("agreement", "window", "bias"),
    )


def bias_table(session: Session, project_id: int | None = None) -> charts.Table:
    """The bias chart's data."""
    return charts.Table(
        "bias",
        ("statistic", "description", "rate", "ci_low", "ci_high", "n", "expected"),
        [
            (b.name, b.label, rounded(b.rate), rounded(b.low), rounded(b.high), b.n, rounded(b.expected))
            for b in annotator_stats.bias_rates(session, project_id)
        ],
    )


def agreement_table(session: Session, project_id: int | None = None) -> charts.Table:
    """Agreement of every annotator pair that shared a set (of one project, or of all), as data."""
    summary = annotator_stats.agreement_summary(session, project_id)
    names = auth_repo.usernames(session, sorted({a for pair in summary.by_pair for a in pair}))
    return charts.Table(
        "annotator-agreement",
        (
            "annotator_a",
            "annotator_b",
            "shared_sets",
            "agreeing_pairs",
            "compared_pairs",
            "rate",
            "mean_tau_b",
        ),
        [
            (
                names.get(a, a),
                names.get(b, b),
                ag.sets,
                ag.agreeing,
                ag.compared,
                rounded(ag.rate),
                rounded(ag.mean_tau_b),
            )
            for (a, b), ag in sorted(summary.by_pair.items())
        ],
    )


@dataclass(frozen=True)
class SetCandidate:
    label: str
    version: str
    text: str
    hidden: bool


@dataclass(frozen=True)
class ConsensusSet:
    set_id: int
    prompt: str
    candidates: list[SetCandidate]
    rankings: list[tuple[str, list[list[str]], bool]]  # (annotator, tiers as labels, all bad)
    consensus: list[list[str]]  # Bradley-Terry consensus (what the agreement statistics compare with)
    training: list[list[str]]  # the mean-tier merge training uses with multi_annotator=consensus
    training_all_bad: bool


@dataclass(frozen=True)
class ConsensusPage:
    sets: list[ConsensusSet]
    pager: Pager


def consensus_page(session: Session, page: int) -> ConsensusPage:
    """Overlapped sets, newest first: each annotator's ranking, their consensus and training's merge."""
    pager = Pager.of(page, 20, quality_repo.count_overlapped_sets(session))
    set_ids = quality_repo.newest_overlapped_sets(session, pager.per_page, pager.offset)
    rankings = quality_repo.live_rankings_of_sets(session, set_ids)
    members = review.set_members(session, set_ids)
    prompts = review.prompts_of_sets(session, set_ids)
    names = auth_repo.usernames(session, sorted({r.annotator_id for r in rankings}))
    out = []
    for set_id in set_ids:
        cands = members.get(set_id, [])
        letters = {m.candidate.id: letter(i) for i, m in enumerate(cands)}
        mine = [r for r in rankings if r.set_id == set_id]

        def labels(tiers: Sequence[Sequence[int]], letters: dict[int, str] = letters) -> list[list[str]]:
            return [[letters.get(int(c), f"#{c}") for c in tier] for tier in tiers]

        merged, merged_bad = (
            mean_tier_consensus([(r.tiers, bool(r.all_bad)) for r in mine]) if mine else ([], False)
        )
        out.append(
            ConsensusSet(
                set_id=set_id,
                prompt=prompts.get(set_id, ""),
                candidates=[
                    SetCandidate(
                        letters[m.candidate.id], m.model_version, m.candidate.text, m.candidate.hidden
                    )
                    for m in cands
                ],
                rankings=[(names.get(r.annotator_id, "?"), labels(r.tiers), bool(r.all_bad)) for r in mine],
                consensus=labels(consensus_tiers([RankingRecord.of(r).tiers for r in mine])) if mine else [],
                training=labels(merged),
                training_all_bad=merged_bad,
            )
        )
    return ConsensusPage(out, pager)


@router.get("/quality", response_class=HTMLResponse)
def quality(request: Request, db: DB, user: AdminUser, project: ProjectParam) -> Response:
    return render(
        request, "admin/quality.html", {"p": quality_page(db, project), **project_context(db, project)}
    )


@router.get("/quality/bias.{fmt}")
def bias_data(db: DB, user: AdminUser, fmt: DataFormat, project: ProjectParam) -> Response:
    return data_response(bias_table(db, project), fmt)


@router.get("/quality/agreement.{fmt}")
def agreement_data(db: DB, user: AdminUser, fmt: DataFormat, project: ProjectParam) -> Response:
    return data_response(agreement_table(db, project), fmt)


@router.get("/quality/consensus", response_class=HTMLResponse)
def consensus(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/consensus.html", {"p": consensus_page(db, page)})
