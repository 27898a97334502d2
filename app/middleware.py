"""ASGI middleware: a cap on every request body, before any parsing (CSRF form reads included), and the
Secure attribute on cookies sent over HTTPS.

Also the one way such middleware answers an error itself: `send_json_error`.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Multipart boundaries and the small fields beside an upload.
BODY_OVERHEAD = 64 * 1024


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to a body over `limit` bytes: declared (Content-Length) or counted while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._reject(send)
                return
        received = 0
        too_large = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            # Whatever the app made of the aborted read (FastAPI turns it into a 400), the answer is 413.
            if too_large:
                if message["type"] == "http.response.start" and not answered:
                    answered = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not answered:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_json_error(send, 413, f"request body too large: the limit is {self.limit:,} bytes")


async def send_json_error(
    send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer `{"detail": detail}` with `status` from ASGI middleware, in place of the app's answer."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecureCookies:
    """Adds the Secure attribute to the cookies the app sets, per request: `always`, or `auto` when the
    request came over HTTPS (the connection's scheme, or X-Forwarded-Proto from a trusted proxy, which
    uvicorn's ProxyHeadersMiddleware has put into the scope before this runs)."""

    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secure = self.mode == "always" or (self.mode == "auto" and scope.get("scheme") == "https")
        if scope["type"] != "http" or not secure:
            await self.app(scope, receive, send)
            return

        async def with_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, _secure(value) if name.lower() == b"set-cookie" else value)
                    for name, value in message.get("headers", [])
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_secure)


def _secure(cookie: bytes) -> bytes:
    attributes = [part.strip().lower() for part in cookie.split(b";")[1:]]
    return cookie if b"secure" in attributes else cookie + b"; secure"
