"""The Data pages: prompt sets (priority, pause), the rankings browser (drop, restore) and the queue of
flagged candidates (hide, show).

The moderation rules are the owning features' (app.prompts.service for prompt sets, app.annotation.service
for rankings and candidates); `ranking_views` labels candidates by the letter the annotator saw and is
shared with the annotator pages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin.common import PER_PAGE, Page, back, letter, page_router
from app.admin.paging import Pager
from app.admin.schemas import FLAG_FILTERS, STATUS_FILTERS, RankingQuery, parse_day, parse_int
from app.annotation import review_repository as review
from app.annotation import service as annotation
from app.deps import DB, AdminUser
from app.errors import Invalid
from app.prompts import repository as prompts_repo
from app.prompts import service as prompts
from app.web import render

router = page_router()


@dataclass(frozen=True)
class TierLabel:
    label: str  # the letter the annotator saw (A, B, ... in their display order), else "#<candidate id>"
    version: str
    hidden: bool


@dataclass(frozen=True)
class RankingView:
    row: review.RankingRow
    tiers: list[list[TierLabel]]
    flags: list[tuple[str, str]]  # (candidate label, flag)
    # False when the display order does not cover the ranked candidates (data from before it was kept):
    # candidates are then named by id, never by a letter the annotator may not have seen.
    lettered: bool = True


def seen_letters(display_order: Sequence[int], ranked: set[int]) -> dict[int, str]:
    """Candidate id -> the letter the annotator saw it under; empty when the order is unknown.

    The set's stored order is not what the annotator saw (each gets their own shuffle), so a rationale
    saying "B is better" only matches a label taken from this ranking's own display order.
    """
    order = [int(c) for c in display_order or ()]
    if not order or not ranked <= set(order):
        return {}
    return {c: letter(i) for i, c in enumerate(order)}


def ranking_views(session: Session, rows: Sequence[review.RankingRow]) -> list[RankingView]:
    """Tiers and flags of rankings, candidates named by the letter the annotator saw and their version."""
    members = review.set_members(session, sorted({r.set_id for r in rows}))
    views = []
    for r in rows:
        versions = {m.candidate.id: (m.model_version, m.candidate.hidden) for m in members.get(r.set_id, [])}
        ranked = {int(c) for tier in r.tiers for c in tier}
        letters = seen_letters(r.display_order, ranked)

        def label(
            c: int, letters: dict[int, str] = letters, versions: dict[int, tuple[str, bool]] = versions
        ) -> TierLabel:
            name, hidden = versions.get(c, ("?", False))
            return TierLabel(letters.get(c, f"#{c}"), name, hidden)

        # A tie reads as the annotator made it ("A = C"), not in stored (candidate id) order.
        seen = {int(c): i for i, c in enumerate(r.display_order or ()) if letters}
        tiers = [
            [label(c) for c in sorted((int(c) for c in tier), key=lambda c: (seen.get(c, len(seen)), c))]
            for tier in r.tiers
        ]
        flags = [
            (letters.get(int(c), f"#{c}"), str(value))
            for c, values in sorted(r.flags.items())
            if str(c).isdigit()
            for value in values
        ]
        views.append(RankingView(r, tiers, flags, lettered=bool(letters)))
    return views


@dataclass(frozen=True)
class PromptSetsPage:
    prompt_sets: list[prompts_repo.PromptSetRow]
    pager: Pager


def prompt_sets_page(session: Session, page: int) -> PromptSetsPage:
    """Prompt sets with their size, tags, priority, pause state and progress."""
    pager = Pager.of(page, PER_PAGE, prompts_repo.count_prompt_sets(session))
    return PromptSetsPage(prompts_repo.prompt_set_rows(session, pager.per_page, pager.offset), pager)


@dataclass(frozen=True)
class RankingsPage:
    rankings: list[RankingView]
    pager: Pager
    query: RankingQuery
    annotators: list[tuple[int, str]]
    prompt_sets: list[tuple[int, str]]
    flag_filters: tuple[str, ...] = FLAG_FILTERS
    status_filters: tuple[str, ...] = STATUS_FILTERS


def ranking_filter(query: RankingQuery) -> review.RankingFilter:
    """The query string's filters, checked (422 naming the bad one)."""
    if query.flag not in FLAG_FILTERS:
        raise Invalid(f"flag must be one of {', '.join(f for f in FLAG_FILTERS if f)}")
    if query.status not in STATUS_FILTERS:
        raise Invalid(f"status must be one of {', '.join(STATUS_FILTERS)}")
    until = parse_day(query.until, "until")
    try:
        # "until" names a day: rankings of that whole day are included.
        until_end = until + dt.timedelta(days=1) if until is not None else None
    except OverflowError:
        raise Invalid("until must be a date before 9999-12-31") from None
    return review.RankingFilter(
        annotator_id=parse_int(query.annotator, "annotator"),
        prompt_set_id=parse_int(query.prompt_set, "prompt_set"),
        flag=query.flag or None,
        since=parse_day(query.since, "since"),
        until=until_end,
        status=query.status,
    )


def rankings_page(session: Session, query: RankingQuery) -> RankingsPage:
    """Rankings filtered by annotator, prompt set, flag, date and drop state; newest first."""
    filt = ranking_filter(query)
    pager = Pager.of(query.page, PER_PAGE, review.count_rankings(session, filt), query.params())
    rows = review.rankings(session, filt, pager.per_page, pager.offset)
    return RankingsPage(
        rankings=ranking_views(session, rows),
        pager=pager,
        query=query,
        annotators=review.annotator_options(session),
        prompt_sets=prompts_repo.all_prompt_sets(session),
    )


@dataclass(frozen=True)
class FlagsPage:
    items: list[review.FlaggedCandidate]
    pager: Pager
    flag: str


def flags_page(session: Session, flag: str, page: int) -> FlagsPage:
    """The moderation queue: visible candidates flagged in live rankings, most recent first."""
    if flag not in ("", "unsafe", "incorrect"):
        raise Invalid("flag must be unsafe or incorrect")
    value = flag or None
    pager = Pager.of(page, 20, review.count_flagged_candidates(session, value), {"flag": flag})
    return FlagsPage(review.flagged_candidates(session, value, pager.per_page, pager.offset), pager, flag)


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request, db: DB, user: AdminUser, page: Page = 1) -> Response:
    return render(request, "admin/data.html", {"p": prompt_sets_page(db, page)})


@router.post("/data/prompt-sets/{prompt_set_id}/priority")
def set_priority(
    db: DB,
    user: AdminUser,
    prompt_set_id: int,
    priority: Annotated[int, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data",
) -> Response:
    prompts.set_prompt_set_priority(db, prompt_set_id, priority)
    return back(next, "/admin/data")


@router.post("/data/prompt-sets/{prompt_set_id}/paused")
def set_paused(
    db: DB,
    user: AdminUser,
    prompt_set_id: int,
    paused: Annotated[bool, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data",
) -> Response:
    prompts.set_prompt_set_paused(db, prompt_set_id, paused)
    return back(next, "/admin/data")


@router.get("/data/rankings", response_class=HTMLResponse)
def rankings_list(request: Request, db: DB, user: AdminUser, q: Annotated[RankingQuery, Query()]) -> Response:
    return render(request, "admin/rankings.html", {"p": rankings_page(db, q)})


@router.get("/data/flags", response_class=HTMLResponse)
def flags_list(request: Request, db: DB, user: AdminUser, flag: str = "", page: Page = 1) -> Response:
    return render(request, "admin/flags.html", {"p": flags_page(db, flag, page)})


@router.post("/data/candidates/{candidate_id}/hidden")
def set_hidden(
    db: DB,
    user: AdminUser,
    candidate_id: int,
    hidden: Annotated[bool, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data/flags",
) -> Response:
    annotation.set_candidate_hidden(db, candidate_id, hidden)
    return back(next, "/admin/data/flags")


@router.post("/data/rankings/{ranking_id}/dropped")
def set_dropped(
    db: DB,
    user: AdminUser,
    ranking_id: int,
    dropped: Annotated[bool, Form()],
    next: Annotated[str, Form(max_length=500)] = "/admin/data/rankings",
) -> Response:
    annotation.set_ranking_dropped(db, ranking_id, dropped)
    return back(next, "/admin/data/rankings")
