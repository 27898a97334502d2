"""The Gold page: the gold sets (comparison sets with a known ranking, mixed blind into annotators' queues
and never trained on), marking a set gold with its ranking, un-marking one, and open sets to choose from.

The rules are app.annotation.gold's; an annotator's accuracy on gold is on their page (/admin/annotators).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin.common import letter, page_router, project_context, redirect
from app.annotation import gold
from app.deps import DB, AdminUser, ProjectParam
from app.errors import AppError, Invalid
from app.web import is_htmx, render

router = page_router()

OPEN_SETS_SHOWN = 20


@dataclass(frozen=True)
class GoldRow:
    view: gold.SetView
    ranking: str  # "A > B = C": letters by the candidates' set order
    rankings: int


@dataclass(frozen=True)
class GoldPage:
    rows: list[GoldRow]
    open_sets: list[gold.SetView]
    editing: gold.SetView | None  # the set whose form is shown (?set=)
    places: dict[int, int]  # its candidates' places in its known ranking (when gold)
    notice: str | None = None


def ranking_text(view: gold.SetView) -> str:
    """The known ranking in the letters the set's candidates have (A = first in the set)."""
    letters = {cid: letter(i) for i, (cid, _) in enumerate(view.candidates)}
    tiers = view.gold_tiers or []
    return " > ".join(" = ".join(letters.get(int(c), f"#{c}") for c in tier) for tier in tiers)


def gold_page(
    session: Session, project_id: int | None, set_id: int | None = None, notice: str | None = None
) -> GoldPage:
    views = gold.gold_views(session, project_id)
    counts = {g.set_id: g.rankings for g in gold.gold_sets(session, project_id)}
    rows = [GoldRow(v, ranking_text(v), counts.get(v.set_id, 0)) for v in views]
    editing = gold.set_view(session, set_id) if set_id is not None else None
    places = {}
    if editing is not None and editing.gold_tiers:
        places = {int(c): i + 1 for i, tier in enumerate(editing.gold_tiers) for c in tier}
    return GoldPage(rows, gold.open_sets(session, project_id, OPEN_SETS_SHOWN), editing, places, notice)


def _places(form: dict[str, str], view: gold.SetView) -> dict[int, int]:
    """Each candidate's place from the form's `place-<candidate id>` fields (1 = best)."""
    places = {}
    for cid, _ in view.candidates:
        raw = form.get(f"place-{cid}", "").strip()
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= len(view.candidates):
            raise Invalid(f"place-{cid}: a place from 1 (best) to {len(view.candidates)}; equal places tie")
        places[cid] = int(raw)
    return places


def _page(request: Request, p: GoldPage, project_id: int | None, db: Session, status: int = 200) -> Response:
    ctx = {"p": p, "error": None, **project_context(db, project_id)}
    return render(request, "admin/gold.html", ctx, status_code=status)


@router.get("/gold", response_class=HTMLResponse)
def gold_index(
    request: Request,
    db: DB,
    user: AdminUser,
    project: ProjectParam,
    set_id: Annotated[int | None, Query(alias="set", ge=1)] = None,
    marked: Annotated[int | None, Query(ge=1)] = None,
    unmarked: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    notice = None
    if marked:
        notice = f"Set #{marked} is gold."
    elif unmarked:
        notice = f"Set #{unmarked} is an ordinary set again."
    try:
        page = gold_page(db, project, set_id, notice)
    except AppError as exc:
        ctx = {"p": gold_page(db, project), "error": exc.message, **project_context(db, project)}
        return render(request, "admin/gold.html", ctx, status_code=exc.status_code)
    return _page(request, page, project, db)


def _after(request: Request, db: Session, set_id: int, notice: str, query: str) -> Response:
    """A full page: back to the list (303); htmx: the page's fragment, with the notice."""
    if is_htmx(request):
        return _page(request, gold_page(db, None, notice=notice), None, db)
    return redirect(f"/admin/gold?{query}={set_id}")


async def _form_fields(request: Request) -> dict[str, str]:
    """The posted text fields (the places are named after candidate ids: not declared one by one)."""
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


@router.post("/gold/{set_id}", response_class=HTMLResponse)
def mark_gold(
    request: Request,
    db: DB,
    user: AdminUser,
    set_id: int,
    form: Annotated[dict[str, str], Depends(_form_fields)],
) -> Response:
    try:
        view = gold.set_view(db, set_id)
        gold.mark_gold(db, set_id, gold.tiers_from_places(_places(form, view)))
    except AppError as exc:
        db.rollback()
        try:
            page = gold_page(db, None, set_id)
        except AppError:
            page = gold_page(db, None)
        ctx = {"p": page, "error": exc.message, **project_context(db, None)}
        return render(request, "admin/gold.html", ctx, status_code=exc.status_code)
    return _after(request, db, set_id, f"Set #{set_id} is gold.", "marked")


@router.post("/gold/{set_id}/unmark", response_class=HTMLResponse)
def unmark_gold(request: Request, db: DB, user: AdminUser, set_id: int) -> Response:
    try:
        gold.unmark_gold(db, set_id)
    except AppError as exc:
        db.rollback()
        ctx = {"p": gold_page(db, None), "error": exc.message, **project_context(db, None)}
        return render(request, "admin/gold.html", ctx, status_code=exc.status_code)
    return _after(request, db, set_id, f"Set #{set_id} is an ordinary set again.", "unmarked")
