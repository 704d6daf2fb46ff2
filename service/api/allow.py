"""Which methods a path supports, answered as HTTP says (RFC 9110), as pure ASGI middleware.

Starlette answers a method a path lacks with 405 and the methods of the first route whose path
matches, so `OPTIONS /tasks` said `Allow: POST` although `GET /tasks` exists. Here every 405 lists
every method of the path, and `OPTIONS` on a route's path is a 204 with that `Allow`. The app still
routes the request (the metrics read the matched route); only its 405 answer is amended.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_DROPPED_FOR_NO_CONTENT = (b"allow", b"content-length", b"content-type")


class AllowedMethods:
    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_content = False

        async def amended(message: Message) -> None:
            nonlocal no_content
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(sorted(methods_of_path(self.router.routes, scope) | {"OPTIONS"}))
                no_content = scope["method"] == "OPTIONS"
                message = _with_allow(message, allow, no_content=no_content)
            elif message["type"] == "http.response.body" and no_content:
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, amended)


def _with_allow(start: Message, allow: str, *, no_content: bool) -> Message:
    dropped = _DROPPED_FOR_NO_CONTENT if no_content else (b"allow",)
    headers = [(name, value) for name, value in start.get("headers", []) if name.lower() not in dropped]
    return {**start, "status": 204 if no_content else 405, "headers": [*headers, (b"allow", allow.encode())]}


def methods_of_path(routes: list[BaseRoute], scope: Scope) -> frozenset[str]:
    """Every method some route fully matches on this path. Routes are asked through `matches`
    alone: an included router answers it for all of its routes."""
    return frozenset(
        method for method in PROBED_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    )
