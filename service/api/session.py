"""The dashboard's login session: a cookie derived from a bearer token, never the token itself.

A person signs in once with a token from `API_TOKENS`; the cookie then holds an HMAC of it, so the
token appears in no URL, history or cookie jar. The cookie is HttpOnly and SameSite=Strict; a request
that changes something (replay, cancel) authenticated by it must also carry `X-AST-Dashboard`, a
header another site's page cannot send without a CORS preflight this API never grants.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "ast_dashboard"
CSRF_HEADER = b"x-ast-dashboard"
LOGIN_PATH = "/dashboard/login"
OPEN_PATHS = frozenset(
    {LOGIN_PATH, "/dashboard/logout", "/dashboard/static/dashboard.css", "/dashboard/static/dashboard.js"}
)
SAFE_METHODS = frozenset({"GET", "HEAD"})
_CONTEXT = b"ast-dashboard-session-v1"


def session_value(token: str | bytes) -> str:
    key = token.encode() if isinstance(token, str) else token
    return hmac.new(key, _CONTEXT, hashlib.sha256).hexdigest()


def cookie_of(cookie_header: bytes | None) -> str | None:
    if not cookie_header:
        return None
    for part in cookie_header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def session_allows(session: str | None, tokens: list[bytes], *, method: str, path: str, csrf: bool) -> bool:
    """The cookie opens the dashboard's pages; anything else only from the page's own scripts."""
    if session is None:
        return False
    if not any(hmac.compare_digest(session, session_value(token)) for token in tokens):
        return False
    if method in SAFE_METHODS:
        return path == "/dashboard" or path.startswith("/dashboard/")
    return csrf


def is_dashboard_page(method: str, path: str) -> bool:
    """An unauthenticated person opening one of these is sent to the login form instead of a 401."""
    return method in SAFE_METHODS and (path == "/dashboard" or path.startswith("/dashboard/"))
