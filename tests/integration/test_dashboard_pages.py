"""The dashboard's pages over HTTP, on the app served against the session stack: failures page by page
(keyset, every failed task once), task pages (404 for an unknown one), the login form's round trip,
the headers every page carries, and none of it in the OpenAPI schema."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from harness.stack.base import StackEndpoints
from service.api import session
from service.db.pool import create_pool
from service.models import Status
from tests.integration.test_api import park_task
from tests.integration.test_streams import served

pytestmark = pytest.mark.integration

TOKEN = "dashboard-pages-token"
FAILED = 120
LINK = re.compile(r'<tr class="failure">\s*<td><a href="/dashboard/tasks/([0-9a-f-]{36})"')
NEXT = re.compile(r'id="next-page" href="([^"]+)"')


@pytest.fixture
async def db(clean_state: StackEndpoints) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(clean_state.postgres_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def http(clean_state: StackEndpoints) -> AsyncIterator[httpx.AsyncClient]:
    async with served(clean_state, api_tokens=[TOKEN]) as (_, client):
        yield client


async def _signed_in(http: httpx.AsyncClient) -> None:
    response = await http.post("/dashboard/login", data={"token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert TOKEN not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie


async def test_failures_page_by_page_show_every_failed_task_once(
    http: httpx.AsyncClient, db: asyncpg.Pool[Any]
) -> None:
    failed = {await park_task(db, Status.FAILED, error={"code": "X", "message": f"n{i}"})
              for i in range(FAILED)}
    await park_task(db, Status.COMPLETED)
    await _signed_in(http)
    seen: list[uuid.UUID] = []
    url: str | None = "/dashboard/failures"
    while url is not None:
        response = await http.get(url)
        assert response.status_code == 200, response.text[:300]
        rows = [uuid.UUID(m) for m in LINK.findall(response.text)]
        assert 0 < len(rows) <= 50
        seen.extend(rows)
        found = NEXT.search(response.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert len(seen) == len(set(seen)) == FAILED
    assert set(seen) == failed


async def test_login_cookie_pages_and_headers(http: httpx.AsyncClient, db: asyncpg.Pool[Any]) -> None:
    assert (await http.get("/dashboard")).headers["location"] == session.LOGIN_PATH
    refused = await http.post("/dashboard/login", data={"token": "wrong"})
    assert refused.status_code == 401
    assert "not accepted" in refused.text
    await _signed_in(http)
    page = await http.get("/dashboard")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'id="live"' in page.text
    task_id = await park_task(db, Status.WAITING_FOR_EVENT)
    assert (await http.get(f"/dashboard/tasks/{task_id}")).status_code == 200
    assert (await http.get(f"/dashboard/tasks/{uuid.uuid4()}")).status_code == 404
    assert (await http.get("/dashboard/tasks/not-a-uuid")).status_code == 404
    assert (await http.get("/tasks")).status_code == 401, "the cookie opens the dashboard, not the API"
    assert (await http.get("/dashboard/static/dashboard.js")).status_code == 200
    assert (await http.get("/dashboard/static/snapshot.py")).status_code == 404
    out = await http.post("/dashboard/logout")
    assert out.status_code == 303
    http.cookies.clear()
    assert (await http.get("/dashboard/live")).status_code == 303
    schema = (await http.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/dashboard")]
