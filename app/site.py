"""Pages around the app: the API's interactive docs (/docs: Swagger UI, /redoc: ReDoc) and /favicon.ico.

FastAPI's built-in pages load their scripts from a CDN and start them with an inline script, so without
internet they are blank and under our Content-Security-Policy they cannot run. These serve the same UIs
from static/vendor/ (npm's swagger-ui-dist and redoc, with their licences), started from a static file.
Pages link static/favicon.svg; /favicon.ico is for what asks the root for it (JSON in a tab, old browsers).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from app.web import ROOT, render

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> Response:
    return render(request, "docs/swagger.html", {"openapi_url": request.app.openapi_url}, block=None)


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> Response:
    return render(request, "docs/redoc.html", {"openapi_url": request.app.openapi_url}, block=None)


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(ROOT / "static" / "favicon.ico", media_type="image/x-icon")
