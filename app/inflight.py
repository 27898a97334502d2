"""A bound on requests in progress per process: never more than database connections, nor than threads.

A request holds its pooled connection, and its transaction's row locks, across several thread-pool hops
(authentication, the endpoint, the commit). With more requests in progress than connections, every pool
thread can end up blocked waiting for a connection while the requests holding the connections wait for a
thread; with more than threads, every thread can end up waiting for a row lock held by a request that
waits for a thread. Either way nothing moves (until the pool's checkout timeout, or forever for a row
lock). Requests over the bound wait here instead, in the event loop, where waiting holds nothing; one that
waits too long is answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from app.middleware import send_json_error


class InFlightLimit:
    """Admit at most `limit` HTTP requests at once (static files excepted); the rest queue in order."""

    def __init__(self, app: ASGIApp, limit: int, wait_seconds: float) -> None:
        self.app = app
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_seconds)
        except TimeoutError:
            detail = f"the server is busy (waited {self.wait_seconds:g} s for a slot); retry shortly"
            await send_json_error(send, 503, detail, ((b"retry-after", b"1"),))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()
