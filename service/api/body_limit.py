"""Request body limit as pure ASGI middleware: over `api_max_body_bytes` is a 413 before any work.

A declared Content-Length over the limit is refused unread. A body without one (chunked, or none
at all) is read here up to the limit and replayed to the app, so the app never sees a partial body
and FastAPI never turns a cut-off stream into a 400.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response

DRAIN_FACTOR = 8


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        messages = await self._read_bounded(receive)
        if messages is None:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)

    async def _read_bounded(self, receive: Receive) -> list[Message] | None:
        """The whole body's messages, or None as soon as it passes the limit."""
        messages: list[Message] = []
        total = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                if message.get("more_body", False):
                    await _discard_rest(receive, DRAIN_FACTOR * self.max_bytes)
                return None
            if not message.get("more_body", False):
                return messages

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "PAYLOAD_TOO_LARGE", f"the request body is over {self.max_bytes} bytes",
            {"maxBytes": self.max_bytes}, headers={"Connection": "close"},
        )
        await response(scope, receive, send)


async def _discard_rest(receive: Receive, budget: int) -> None:
    """Reads (and drops) a bounded rest of the body, so the client reads our 413 instead of a reset
    connection; a body longer than the budget is cut off and the connection closed."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

