"""The faults a drill adds to the nemesis's process faults: network faults as Toxiproxy toxics on
the named proxies, and workload faults (jobs that poison, exhaust retries, hang; duplicated job
messages). Each is a small class with start/stop, so the nemesis records it like any other.

`DrillFaults` is the catalog a drill's nemesis uses: its own faults first, the stack's process
faults (`catalog_for`) for the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg

from chaos.drill_model import NETWORK_FAULTS, WORKLOAD_FAULTS
from chaos.faults import Details, Fault
from chaos.nemesis import FaultCatalog, FaultSkipped
from chaos.toxiproxy_client import ToxiproxyClient
from harness.stack.base import StackEndpoints

Submit = Callable[[dict[str, Any], int], list[str]]
"""Submits `count` simulate jobs with this payload through the drill's recording client; taskIds."""

JOB_EXCHANGE = "ast.jobs.x"


@dataclass
class ToxicFault:
    """Toxics on every proxy whose name matches (`-rabbitmq`, `-postgres`, or all); `cut` disables
    the proxies instead (a partition: connections closed, new ones refused)."""

    name: str
    client: ToxiproxyClient
    proxies: Sequence[str]
    toxics: Sequence[tuple[str, dict[str, int]]] = ()
    cut: bool = False

    @property
    def target(self) -> str:
        return ",".join(self.proxies)

    def start(self) -> Details:
        for proxy in self.proxies:
            if self.cut:
                self.client.set_enabled(proxy, False)
            for toxic_type, attributes in self.toxics:
                self.client.add_toxic(proxy, toxic_type, attributes, name=f"drill-{toxic_type}")
        return {"target": self.target, "cut": self.cut, "toxics": [t for t, _ in self.toxics]}

    def stop(self) -> Details:
        for proxy in self.proxies:
            if self.cut:
                self.client.set_enabled(proxy, True)
            present = {t.name for t in self.client.toxics(proxy)}
            for toxic_type, _ in self.toxics:
                if f"drill-{toxic_type}" in present:
                    self.client.remove_toxic(proxy, f"drill-{toxic_type}")
        return {"healed_proxies": len(self.proxies)}


def network_fault(name: str, endpoints: StackEndpoints, params: dict[str, Any]) -> ToxicFault:
    if not endpoints.toxiproxy_url or not endpoints.toxiproxy_proxies:
        raise FaultSkipped(f"{name} needs every link through a proxy (harness up --proxy, [toxiproxy])")
    client = ToxiproxyClient(endpoints.toxiproxy_url)
    names = endpoints.toxiproxy_proxies
    latency = {"latency": int(params.get("latency_ms", 100)), "jitter": int(params.get("jitter_ms", 0))}
    if name == "broker-partition":
        return ToxicFault(name, client, [p for p in names if "-rabbitmq" in p], cut=True)
    if name == "db-latency":
        return ToxicFault(name, client, [p for p in names if p.endswith("-postgres")], [("latency", latency)])
    toxics = [("latency", latency), ("bandwidth", {"rate": int(params.get("rate_kb", 256))})]
    return ToxicFault(name, client, list(names), toxics)


@dataclass
class JobInjection:
    """`count` jobs that misbehave on purpose, submitted through the drill's client so the history
    holds them: their taskIds go into the fault's record for the drill's expectations."""

    name: str
    submit: Submit
    payload: dict[str, Any]
    count: int
    task_ids: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return "workload"

    def start(self) -> Details:
        self.task_ids = self.submit(self.payload, self.count)
        return {"target": self.target, "taskIds": self.task_ids, "payload": self.payload}

    def stop(self) -> Details:
        return {}


@dataclass
class DuplicateDelivery:
    """Submits `count` jobs, and once the relay has published each, publishes its job message
    again with the same message id (a relay that crashed before it marked the row sent)."""

    endpoints: StackEndpoints
    submit: Submit
    count: int
    name: str = "duplicate-delivery"
    task_ids: list[str] = field(default_factory=list)
    timeout_s: float = 20.0

    @property
    def target(self) -> str:
        return "ast.jobs.x"

    def start(self) -> Details:
        self.task_ids = self.submit({"durationMs": 600, "steps": 3, "outcome": "success"}, self.count)
        copies = asyncio.run(self._duplicate())
        return {"target": self.target, "taskIds": self.task_ids, "copies": copies}

    async def _duplicate(self) -> int:
        rows = await self._published_rows()
        connection = await aio_pika.connect(self.endpoints.amqp_url.split(",")[0], timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(JOB_EXCHANGE)
            for row in rows:
                message = aio_pika.Message(
                    row["body"],
                    message_id=str(row["message_id"]),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(message, routing_key=str(row["routing_key"]))
        return len(rows)

    async def _published_rows(self) -> list[dict[str, Any]]:
        """The sent outbox rows of the injected tasks (waiting, bounded, for the relay)."""
        deadline = time.monotonic() + self.timeout_s
        connection = await asyncpg.connect(self.endpoints.postgres_dsn, timeout=10)
        try:
            while True:
                rows = await connection.fetch(
                    "SELECT message_id, routing_key, body::text AS body FROM outbox WHERE exchange = $1 "
                    "AND task_id = ANY($2::uuid[]) AND sent_at IS NOT NULL",
                    JOB_EXCHANGE,
                    self.task_ids,
                )
                if len(rows) >= len(self.task_ids) or time.monotonic() > deadline:
                    return [_outbox_message(dict(row)) for row in rows]
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    def stop(self) -> Details:
        return {}


def _outbox_message(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its jsonb body (read as text) as the bytes the relay publishes."""
    return {**row, "body": str(row["body"]).encode()}


WORKLOAD_PAYLOADS: dict[str, dict[str, Any]] = {
    "poison-message": {"durationMs": 50, "steps": 1, "outcome": "crash"},
    "retry-exhaustion": {"durationMs": 20, "steps": 1, "outcome": "retryable"},
    "job-timeout": {"durationMs": 50, "steps": 1, "outcome": "hang", "failAttempts": 1, "timeoutMs": 1000},
}


class DrillFaults:
    """A drill's catalog: network and workload faults here, process faults from the stack's."""

    def __init__(self, endpoints: StackEndpoints, processes: FaultCatalog, submit: Submit) -> None:
        self.endpoints = endpoints
        self.processes = processes
        self.submit = submit

    def build(self, name: str, **params: Any) -> Fault:
        if name in NETWORK_FAULTS and name not in dict(self.endpoints.fault_commands):
            return network_fault(name, self.endpoints, params)
        count = int(params.get("count", 3))
        if name == "duplicate-delivery":
            return DuplicateDelivery(self.endpoints, self.submit, count)
        if name in WORKLOAD_FAULTS:
            return JobInjection(name, self.submit, WORKLOAD_PAYLOADS[name], count)
        return self.processes.build(name, **params)
