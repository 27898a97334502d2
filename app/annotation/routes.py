"""Annotator pages: the ranking task."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import CurrentUser
from app.web import render

router = APIRouter(tags=["annotation"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: CurrentUser) -> Response:
    return render(request, "home.html", {})
