"""`/metrics` stays bounded whatever clients send, and is behind the bearer token when there is one.

The API runs in process (httpx.ASGITransport, lifespan run, no relay) against the session stack's
PostgreSQL and RabbitMQ. Before the fix every made-up method (`curl -X M0001X /health`) added a
counter and a histogram's worth of series, and anyone could do it: the metrics middleware runs
before auth.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import httpx
import pytest

from harness.stack.base import StackEndpoints
from service.api.app import create_app
from service.config import Settings

pytestmark = pytest.mark.integration

TOKEN = "metrics-s3cret"
REQUESTS = 1000
ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(clean_state: StackEndpoints) -> AsyncIterator[ClientFactory]:
    """Builds an app on the stack's servers (lifespan run) and an ASGI client on it."""
    async with AsyncExitStack() as stack:

        async def factory(tokens: list[str]) -> httpx.AsyncClient:
            settings = Settings(
                postgres_url=clean_state.postgres_dsn,
                rabbit_url=clean_state.amqp_url,
                relay_in_api=False,
                api_tokens=tokens,
            )
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30)
            return await stack.enter_async_context(client)

        yield factory


def made_up_request(n: int) -> tuple[str, str]:
    """The n-th request an attacker makes up: one of SHAPES kinds, each time a new method or id."""
    token = uuid.uuid4().hex
    paths = [
        "/health",
        f"/health/{token}",
        f"/tasks/{uuid.uuid4()}",
        f"/tasks/{token}",
        f"/tasks/{uuid.uuid4()}/events",
        f"/{token}",
    ]
    methods = [f"M{n:04d}X", "GET", "get", "POST", f"X-{token}"]
    return methods[n % len(methods)], paths[n // len(methods) % len(paths)]


SHAPES = 5 * 6


async def series(client: httpx.AsyncClient) -> set[str]:
    """The names-with-labels of every sample line of /metrics (values left out)."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    lines = [line for line in response.text.splitlines() if line and not line.startswith("#")]
    return {line.rsplit(" ", 1)[0] for line in lines}


async def send(client: httpx.AsyncClient, requests: list[tuple[str, str]]) -> None:
    for start in range(0, len(requests), 50):
        batch = requests[start : start + 50]
        answers = await asyncio.gather(*(client.request(method, path) for method, path in batch))
        assert all(answer.status_code < 500 for answer in answers), [a.status_code for a in answers]


async def test_made_up_methods_and_paths_leave_the_series_bounded(make_client: ClientFactory) -> None:
    client = await make_client([])
    await send(client, [made_up_request(n) for n in range(SHAPES)])  # every kind once
    await series(client)  # and a scrape, which counts itself
    before = await series(client)

    await send(client, [made_up_request(n) for n in range(SHAPES, SHAPES + REQUESTS)])
    after = await series(client)

    assert after == before, sorted(after - before)[:10]
    text = "\n".join(after)
    assert "M0100X" not in text
    assert 'method="OTHER",route="/health",status="405"' in text
    assert 'method="GET",route="unmatched",status="404"' in text
    assert 'route="/tasks/{task_id}"' in text


async def test_metrics_need_the_token_and_probes_stay_open(make_client: ClientFactory) -> None:
    client = await make_client([TOKEN])
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"
    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert metrics.status_code == 200
    assert "ast_api_requests_total" in metrics.text
    for probe in ("/health", "/ready"):
        assert (await client.get(probe)).status_code == 200, probe


async def test_without_tokens_metrics_stay_open(make_client: ClientFactory) -> None:
    client = await make_client([])
    assert (await client.get("/metrics")).status_code == 200
