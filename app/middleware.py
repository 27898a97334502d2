"""ASGI middleware that caps every request body, before any parsing (CSRF form reads included).

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
