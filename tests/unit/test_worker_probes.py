"""The worker's probes decide from what they read: a stale heartbeat is not live, a dependency
that does not answer is not ready. (The running worker's answers: scenarios/e2e/test_worker_probes.py.)"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from service.worker.health import HealthServer, HealthServerError, Heartbeat, WorkerProbe, health_app

pytestmark = pytest.mark.unit


async def postgres_up() -> None:
    return None


async def postgres_down() -> None:
    raise ConnectionRefusedError("no server")


async def depths() -> dict[str, int]:
    return {"ast.simulate.q": 7}


def probe(
    *, postgres: object = postgres_up, rabbitmq: bool = True, heartbeat_age: float = 0.0
) -> WorkerProbe:
    heartbeat = Heartbeat()
    heartbeat._last = time.monotonic() - heartbeat_age
    return WorkerProbe(
        worker_id="w-1", queues=("ast.simulate.q",), concurrency=2, is_running=lambda: True,
        rabbitmq_open=lambda: rabbitmq, postgres=postgres, queue_depths=depths,  # type: ignore[arg-type]
        loop=asyncio.get_running_loop(), heartbeat=heartbeat, live_after_s=10.0,
    )


async def get(target: WorkerProbe, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=health_app(target))
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        return await client.get(path)


async def test_live_until_the_heartbeat_is_older_than_the_limit() -> None:
    fresh = await get(probe(heartbeat_age=1.0), "/live")
    stale = await get(probe(heartbeat_age=11.0), "/live")
    assert (fresh.status_code, fresh.json()["status"]) == (200, "live")
    assert (stale.status_code, stale.json()["error"]["code"]) == (503, "NOT_LIVE")
    assert stale.json()["checks"]["heartbeatAgeS"] >= 11.0


@pytest.mark.parametrize(
    ("target", "down"),
    [
        (lambda: probe(postgres=postgres_down), {"postgres": "down: ConnectionRefusedError"}),
        (lambda: probe(rabbitmq=False), {"rabbitmq": "down: no open connection"}),
    ],
)
async def test_not_ready_names_what_does_not_answer(target: object, down: dict[str, str]) -> None:
    assert callable(target)
    answer = await get(target(), "/ready")
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"]["code"] == "NOT_READY"
    assert {key: body["checks"][key] for key in down} == down
    assert {"status", "isRunning", "queue", "concurrency", "timestamp"} <= set(body)


async def test_ready_when_consuming_and_both_servers_answer() -> None:
    answer = await get(probe(), "/ready")
    assert answer.status_code == 200
    assert answer.json()["checks"] == {"consuming": "ok", "rabbitmq": "ok", "postgres": "ok"}


async def test_a_scrape_reads_the_queue_depths() -> None:
    text = (await get(probe(), "/metrics")).text
    assert 'ast_worker_queue_messages{queue="ast.simulate.q"} 7.0' in text


async def test_a_taken_port_is_refused_at_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(health_app(probe()), "127.0.0.1", port)
        with pytest.raises(HealthServerError, match=f"127.0.0.1:{port}"):
            await asyncio.to_thread(server.start)


async def test_the_server_answers_from_its_own_thread_and_stops() -> None:
    server = HealthServer(health_app(probe()), "127.0.0.1", 0)
    await asyncio.to_thread(server.start)
    try:
        assert server.port is not None
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/health")
        assert answer.json()["status"] == "ok"
    finally:
        await asyncio.to_thread(server.stop)
