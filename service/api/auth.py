"""Bearer-token authentication as pure ASGI middleware, so it guards every route, known or not.

An empty `API_TOKENS` disables it. Probes (`/health`, `/ready`) and the API docs stay open:
orchestrators call them without credentials. The dashboard's pages also take its login cookie, and
send a person without one to its login form. `/metrics` is guarded like any route (a scraper sends
the bearer token): it shows every route's traffic. Tokens are compared in constant time and never
logged.
"""

from __future__ import annotations

import hmac

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import session
from service.api.errors import error_response

EXEMPT_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_OPEN = EXEMPT_PATHS | session.OPEN_PATHS


class BearerAuth:
    def __init__(self, app: ASGIApp, tokens: list[str]) -> None:
        self.app = app
        self._tokens = [token.encode() for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._tokens or scope["path"] in _OPEN:
            await self.app(scope, receive, send)
            return
        if self._authorized(scope) or self._session_allows(scope):
            await self.app(scope, receive, send)
            return
        if session.is_dashboard_page(scope["method"], scope["path"]):
            await RedirectResponse(session.LOGIN_PATH, status_code=303)(scope, receive, send)
            return
        response = error_response(
            401, "UNAUTHORIZED", "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)

    def _session_allows(self, scope: Scope) -> bool:
        """The dashboard's login cookie (see `service.api.session`)."""
        return session.session_allows(
            session.cookie_of(_header(scope, b"cookie")), self._tokens, method=scope["method"],
            path=scope["path"], csrf=_header(scope, session.CSRF_HEADER) is not None,
        )

    def _authorized(self, scope: Scope) -> bool:
        header = _header(scope, b"authorization")
        if header is None:
            return False
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        presented = token.strip()
        return any(hmac.compare_digest(presented, known) for known in self._tokens)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None
