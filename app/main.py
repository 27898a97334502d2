"""The FastAPI application: middleware, error handling and the feature routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.config import get_settings
from app.db import session_factory
from app.deps import csrf_protect, text_rule
from app.errors import AppError, LoginRequired
from app.inflight import InFlightLimit
from app.middleware import BODY_OVERHEAD, BodySizeLimit, SecureCookies
from app.web import ROOT, is_htmx, render

log = logging.getLogger(__name__)


# Two inline <style> elements ReDoc (/redoc) needs, allowed by hash: the empty one styled-components adds and
# then fills through the CSSOM (not checked by CSP; only script can do it), and the fixed style sheet its
# bundle inserts (perfect-scrollbar's). Without them ReDoc stops with "CSSStyleSheet could not be found".
# They let in no other style text; a ReDoc update that changes the sheet fails tests/browser/test_site.py.
EMPTY_STYLE_HASH = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
REDOC_STYLE_HASH = "sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc="
# Scripts only from our own files (no inline script, no eval: htmx is configured without it), styles
# from our files plus style attributes (the admin charts colour SVG series inline), nothing framed.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        f"style-src 'self' '{EMPTY_STYLE_HASH}' '{REDOC_STYLE_HASH}'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the security headers to every HTTP answer, error pages and middleware answers included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/healthz"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Sync endpoints and dependencies run on this thread pool (RANKLOOP_REQUEST_THREADS, default 8).
    anyio.to_thread.current_default_thread_limiter().total_tokens = get_settings().request_threads
    # Create the engine (and start the embedded server, if that is the database) off the event loop,
    # before the first request opens a session on it.
    await anyio.to_thread.run_sync(session_factory)
    yield


def create_app() -> FastAPI:
    from app.admin.routes import router as admin_router
    from app.annotation.routes import router as annotation_router
    from app.api.router import router as api_router
    from app.auth.routes import router as auth_router
    from app.health import router as health_router
    from app.site import router as site_router

    settings = get_settings()
    app = FastAPI(
        title="rankloop",
        version="0.1.0",
        description="Rank LLM completions, retrain the reward model and policy, serve new candidates.",
        dependencies=[Depends(csrf_protect), Depends(text_rule)],
        lifespan=_lifespan,
        # Served by app/site.py from our own files, under the same CSP as every page.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.resolved_secret_key(),
        session_cookie="rankloop_session",
        max_age=settings.session_hours * 3600,
        same_site="lax",
        # Secure is added per request (SecureCookies): over HTTPS, or always, as cookie_secure says.
        https_only=False,
    )
    app.add_middleware(SecureCookies, mode=settings.cookie_secure.value)
    # Never more requests in progress than pooled connections, nor than threads: a request may wait in
    # its thread for a row lock held by another request, which must then find a thread to finish on.
    app.add_middleware(
        InFlightLimit,
        limit=min(settings.db_pool_size + settings.db_max_overflow, settings.request_threads),
        wait_seconds=settings.request_queue_seconds,
    )
    # Bounds every body before sessions, CSRF form parsing or uploads read it.
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes + BODY_OVERHEAD)
    # Outermost but one: every answer carries them, the limiters' 413 and 503 included.
    app.add_middleware(SecurityHeaders)
    if settings.trusted_proxies.strip():
        # Outermost: the client address (login throttling) and scheme (Secure cookies) come from
        # X-Forwarded-For/-Proto only when the connection is from a configured proxy; `rankloop serve`
        # turns uvicorn's own handling off, which would believe any local client.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        headers = {}
        if "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
        if _wants_json(request):
            if isinstance(exc, LoginRequired):
                headers["WWW-Authenticate"] = "Bearer"
            return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)
        if isinstance(exc, LoginRequired):
            target = "/login?next=" + quote(request.url.path)
            if is_htmx(request):
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        return render(
            request,
            "error.html",
            {"message": exc.message, "status": exc.status_code},
            status_code=exc.status_code,
            block="content",
        )

    @app.exception_handler(DataError)
    async def data_rejected(request: Request, exc: DataError) -> Response:
        # Postgres refused a value the request carried (an id beyond the integer range, a malformed
        # string...): the client's input, so a 4xx; the transaction is rolled back, nothing is written.
        reason = getattr(getattr(exc.orig, "diag", None), "message_primary", None) or "invalid value"
        message = f"a value in the request is not acceptable: {reason}"
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=422)
        return render(request, "error.html", {"message": message, "status": 422}, status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def db_unavailable(request: Request, exc: DBAPIError) -> Response:
        # The database is down or restarting: say so and let the client retry; the pool reconnects.
        log.warning("database unavailable: %s", exc.orig)
        message = "the database is unavailable; retry shortly"
        headers = {"Retry-After": "5"}
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=503, headers=headers)
        response = render(request, "error.html", {"message": message, "status": 503}, status_code=503)
        response.headers.update(headers)
        return response

    app.include_router(health_router)
    app.include_router(site_router)
    app.include_router(auth_router)
    app.include_router(annotation_router)
    app.include_router(admin_router)
    app.include_router(api_router)
    if settings.bench_endpoints:
        from app.api.bench import router as bench_router

        app.include_router(bench_router, prefix="/api/v1")
    return app
