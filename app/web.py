"""Template rendering: a full page, or just the named block when htmx asks (HX-Request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from jinja2_fragments.fastapi import Jinja2Blocks

from app.deps import csrf_token
from app.markdown import render_markdown

ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Blocks(directory=str(ROOT / "templates"))
# Model text (prompts, candidates) as safe HTML: `{{ text | markdown }}`; see app/markdown.py.
templates.env.filters["markdown"] = render_markdown


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = "content",
    status_code: int = 200,
) -> Response:
    """Render `template`; for htmx requests only `block` (the page's main fragment)."""
    ctx = {
        "request": request,
        "csrf_token": csrf_token(request),
        "user": getattr(request.state, "viewer", None),
    }
    ctx.update(context or {})
    block_name = block if is_htmx(request) else None
    return templates.TemplateResponse(request, template, ctx, block_name=block_name, status_code=status_code)
