"""`GET /dashboard`: the live queue and job dashboard (HTML), its live fragment, task pages, the
failures' pages and the login form. None of it is in the OpenAPI schema: these are pages, not API.

Every viewer's refresh reads the one snapshot `service.dashboard.snapshot.Dashboard` keeps (at most
one query set a second for all of them); the live fragment is rendered once per snapshot too.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from importlib import resources
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.api import session
from service.api.deps import AppSettings, Broker, Pool
from service.dashboard import reads
from service.dashboard.model import Snapshot
from service.dashboard.render import redact, render
from service.dashboard.snapshot import ACQUIRE_TIMEOUT_S, Dashboard

router = APIRouter(include_in_schema=False)

FAILURES_PER_PAGE = 50
STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_LOGIN_BODY = 4096


def _page(html: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _dashboard(request: Request) -> Dashboard:
    state = request.app.state
    if getattr(state, "dashboard", None) is None:
        state.dashboard = Dashboard(state.settings)
        state.dashboard_html = (None, "")
    dashboard: Dashboard = state.dashboard
    return dashboard


async def _snapshot(request: Request, pool: Pool, broker: Broker) -> Snapshot:
    dashboard = _dashboard(request)
    return await dashboard.current(lambda: dashboard.build(pool, broker))


async def _live_html(request: Request, pool: Pool, broker: Broker) -> str:
    snapshot = await _snapshot(request, pool, broker)
    rendered_for, html = request.app.state.dashboard_html
    if rendered_for is not snapshot:
        html = render("live.html", s=snapshot)
        request.app.state.dashboard_html = (snapshot, html)
    return str(html)


@router.get("/dashboard")
async def dashboard_page(request: Request, pool: Pool, broker: Broker, settings: AppSettings) -> HTMLResponse:
    live = await _live_html(request, pool, broker)
    return _page(render("dashboard.html", live=live, auth=bool(settings.api_tokens)))


@router.get("/dashboard/live")
async def dashboard_live(request: Request, pool: Pool, broker: Broker) -> HTMLResponse:
    return _page(await _live_html(request, pool, broker))


@router.get("/dashboard/tasks/{task_id}")
async def task_page(task_id: str, pool: Pool, settings: AppSettings) -> HTMLResponse:
    try:
        parsed = uuid.UUID(task_id)
    except ValueError:
        return _page(render("missing.html", task_id=task_id[:100]), 404)
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as raw:
        page = await reads.task_page(reads.CountingConnection(raw), parsed)
    if page is None:
        return _page(render("missing.html", task_id=task_id), 404)
    return _page(render("task.html", page=page, payload=redact(page.task["payload"]),
                        auth=bool(settings.api_tokens), max_events=reads.MAX_EVENTS))


@router.get("/dashboard/failures")
async def failures_page(
    pool: Pool, settings: AppSettings,
    at: Annotated[datetime | None, Query()] = None, id: Annotated[uuid.UUID | None, Query()] = None,
) -> HTMLResponse:
    """Every FAILED task, newest first, a keyset page at a time (`at`, `id`: the last row seen)."""
    before = (at, id) if at is not None and id is not None else None
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as raw:
        rows = await reads.failures(reads.CountingConnection(raw), FAILURES_PER_PAGE + 1, before)
    more = len(rows) > FAILURES_PER_PAGE
    rows = rows[:FAILURES_PER_PAGE]
    return _page(render("failures.html", failures=rows, next=rows[-1] if more else None,
                        auth=bool(settings.api_tokens)))


@router.get("/dashboard/login")
async def login_form(settings: AppSettings) -> Response:
    if not settings.api_tokens:
        return RedirectResponse("/dashboard", status_code=303)
    return _page(render("login.html", failed=False))


@router.post("/dashboard/login")
async def login(request: Request, settings: AppSettings) -> Response:
    """The token comes in a form body (never the URL) and leaves as an HMAC in an HttpOnly cookie."""
    if not settings.api_tokens:
        return RedirectResponse("/dashboard", status_code=303)
    body = (await request.body())[:MAX_LOGIN_BODY].decode("utf-8", "replace")
    token = (parse_qs(body).get("token") or [""])[0].strip()
    if not token or not any(hmac.compare_digest(token.encode(), t.encode()) for t in settings.api_tokens):
        return _page(render("login.html", failed=True), 401)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(session.COOKIE, session.session_value(token), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/dashboard/logout")
async def logout() -> Response:
    response = RedirectResponse(session.LOGIN_PATH, status_code=303)
    response.delete_cookie(session.COOKIE, path="/")
    return response


@router.get("/dashboard/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return Response(status_code=404)
    text = resources.files("service.dashboard").joinpath("static", name).read_text(encoding="utf-8")
    return Response(text, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})
