"""Request bodies are parsed as standard JSON: NaN, Infinity and numbers out of a double's range
(`1e400`, which Python would read as inf) are a 422 at the door, for every route of a router
built with `route_class=StrictJsonRoute`, before any value reaches PostgreSQL (which refuses them
mid-transaction, and logs the payload)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from service.payloads import parse_json


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_json_handler(request: Request) -> Response:
            if not isinstance(request, StrictJsonRequest):  # a subclass's handler may have read it
                request = StrictJsonRequest(request.scope, request.receive)
            return await handler(request)

        return strict_json_handler
