"""RabbitMQ as the harness sees it: one management-API client, and exact depths over AMQP.

Every reader of the management API (the snapshot, the sampler, the suites' clean-up, the tests
that count consumers) goes through `Management`, so credentials, vhost quoting and timeouts are
handled in one place.

The DLQ's messages are read with `ack_requeue_true`: they go back to the queue, so reading never
changes what a later reader (or a replay) sees. Job and retry queues are never peeked: their
messages count deliveries (a quorum queue's `x-delivery-limit`), so a peek could push a job into
the DLQ; for them depth is enough. Management statistics lag (`collect_statistics_interval`), so
when an AMQP URL is given the ready counts of job and retry queues come from passive declares.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import httpx

from harness.state import DLQ, DLQ_PEEK_MARGIN, QueueDepth, QueueMessage, queue_kind

QUEUE_PREFIX = "ast."


def vhost_of(amqp_url: str) -> str:
    """The AMQP URL's vhost, as the management API names it: an empty path is the default `/`."""
    path = urlsplit(amqp_url.split(",")[0].strip()).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class Management:
    """The management HTTP API of one node (or cluster), with the URL's credentials as basic auth."""

    def __init__(self, management_url: str, *, vhost: str = "/", timeout_s: float = 10.0) -> None:
        parts = urlsplit(management_url)
        auth = httpx.BasicAuth(unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        netloc = parts.hostname or "127.0.0.1"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.vhost = vhost
        self.http = httpx.AsyncClient(base_url=base, auth=auth, timeout=timeout_s)

    async def __aenter__(self) -> Management:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.http.aclose()

    def _queues_path(self, queue: str | None = None) -> str:
        path = f"/api/queues/{quote(self.vhost, safe='')}"
        return f"{path}/{quote(queue, safe='')}" if queue is not None else path

    async def queue_rows(self, columns: str) -> list[dict[str, Any]]:
        response = await self.http.get(self._queues_path(), params={"columns": columns})
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def depths(self) -> tuple[QueueDepth, ...]:
        """Every queue of the vhost: ready, unacked and consumers, from management statistics."""
        rows = await self.queue_rows("name,messages,messages_ready,messages_unacknowledged,consumers")
        return tuple(
            QueueDepth(
                name=q["name"],
                kind=queue_kind(q["name"]),
                messages=int(q.get("messages") or 0),
                ready=int(q.get("messages_ready") or 0),
                unacked=int(q.get("messages_unacknowledged") or 0),
                consumers=int(q.get("consumers") or 0),
            )
            for q in rows
        )

    async def exchange_names(self) -> list[str]:
        path = f"/api/exchanges/{quote(self.vhost, safe='')}"
        response = await self.http.get(path, params={"columns": "name"})
        response.raise_for_status()
        return [row["name"] for row in response.json()]

    async def create_vhost(self, user: str) -> None:
        """Creates this client's vhost and gives `user` every right on it (idempotent)."""
        name = quote(self.vhost, safe="")
        (await self.http.put(f"/api/vhosts/{name}")).raise_for_status()
        rights = {"configure": ".*", "write": ".*", "read": ".*"}
        granted = await self.http.put(f"/api/permissions/{name}/{quote(user, safe='')}", json=rights)
        granted.raise_for_status()

    async def queue(self, name: str) -> dict[str, Any]:
        """Everything the management API says of one queue (a quorum queue's `leader`, `members`,
        `online` among it)."""
        response = await self.http.get(self._queues_path(name))
        response.raise_for_status()
        row: dict[str, Any] = response.json()
        return row

    async def consumer_rows(self) -> list[dict[str, Any]]:
        """Every consumer of the vhost: its tag, channel and queue."""
        response = await self.http.get(f"/api/consumers/{quote(self.vhost, safe='')}")
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
        return rows

    async def consumers(self) -> dict[str, int]:
        return {q["name"]: int(q.get("consumers") or 0) for q in await self.queue_rows("name,consumers")}

    async def peek(self, queue: str, count: int) -> tuple[QueueMessage, ...]:
        """Reads up to `count` messages and puts them back (`ack_requeue_true`)."""
        if count <= 0:
            return ()
        response = await self.http.post(
            f"{self._queues_path(queue)}/get",
            json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000},
        )
        response.raise_for_status()
        return tuple(_queue_message(queue, raw) for raw in response.json())

    async def purge_ast_queues(self) -> list[str]:
        """Empties every `ast.*` queue of the vhost; returns the names purged."""
        purged = []
        for queue in await self.queue_rows("name"):
            if queue["name"].startswith(QUEUE_PREFIX):
                (await self.http.delete(f"{self._queues_path(queue['name'])}/contents")).raise_for_status()
                purged.append(queue["name"])
        return purged


def _decode_payload(raw: dict[str, Any]) -> Any:
    payload = raw.get("payload", "")
    if raw.get("payload_encoding") == "base64":
        payload = base64.b64decode(payload).decode("utf-8", "replace")
    try:
        return json.loads(payload)
    except (TypeError, ValueError, RecursionError):  # a DLQ holds anything, even `[` * 100_000
        return payload


def _deaths(properties: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    deaths = (properties.get("headers") or {}).get("x-death") or []
    return tuple(d for d in deaths if isinstance(d, dict))


def _queue_message(queue: str, raw: dict[str, Any]) -> QueueMessage:
    body = _decode_payload(raw)
    task_id = body.get("taskId") if isinstance(body, dict) else None
    properties = raw.get("properties") or {}
    deaths = _deaths(properties)
    first = deaths[0] if deaths else {}
    return QueueMessage(
        queue=queue,
        task_id=str(task_id) if task_id else None,
        body=body,
        message_id=properties.get("message_id"),
        redelivered=bool(raw.get("redelivered")),
        death_reason=f"{first.get('reason')} from {first.get('queue')}" if first else None,
        death_count=sum(int(d.get("count") or 0) for d in deaths),
        reason=_text_header(properties, "x-ast-reason"),
    )


def _text_header(properties: dict[str, Any], name: str) -> str | None:
    value = (properties.get("headers") or {}).get(name)
    return str(value) if value is not None else None


async def exact_ready_counts(amqp_url: str, names: list[str]) -> dict[str, int]:
    """Ready counts by passive declare: exact, unlike management statistics. Missing queues are left out."""
    counts: dict[str, int] = {}
    connection = await aio_pika.connect(amqp_url.split(",")[0].strip(), timeout=10)
    async with connection:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                counts[name] = int(queue.declaration_result.message_count or 0)
            except aio_pika.exceptions.ChannelClosed:
                continue
            finally:
                if not channel.is_closed:
                    await channel.close()
    return counts


def with_exact(depths: tuple[QueueDepth, ...], exact: Mapping[str, int]) -> tuple[QueueDepth, ...]:
    """Depths with the exact ready counts of a passive declare where there are any: then a queue
    holds exactly its ready plus unacknowledged messages. The management API's own total is
    statistics, which go stale (after a cluster node is lost it kept reporting 8 messages in a
    queue whose leader held none), so it is trusted only where no exact count was read."""
    out = []
    for q in depths:
        if q.name in exact:
            ready = exact[q.name]
            out.append(QueueDepth(q.name, q.kind, ready + q.unacked, ready, q.unacked, q.consumers))
        else:
            out.append(q)
    return tuple(out)


@dataclass(frozen=True)
class RabbitState:
    queues: tuple[QueueDepth, ...]
    dlq_messages: tuple[QueueMessage, ...]
    dlq_complete: bool


async def read_rabbitmq(
    management_url: str, *, vhost: str = "/", amqp_url: str | None = None, peek_dlq: bool = True
) -> RabbitState:
    """Queue depths (exact ready counts when `amqp_url` is given) and the DLQ's messages."""
    async with Management(management_url, vhost=vhost) as management:
        depths = await management.depths()
        if amqp_url:
            names = [q.name for q in depths if q.kind in {"job", "retry", "dlq"}]
            depths = with_exact(depths, await exact_ready_counts(amqp_url, names))
        dlq = next((q for q in depths if q.kind == "dlq"), None)
        if not peek_dlq or dlq is None:
            return RabbitState(depths, (), dlq is None or dlq.messages == 0)
        messages = await management.peek(DLQ, dlq.messages + DLQ_PEEK_MARGIN)
    return RabbitState(depths, messages, len(messages) >= dlq.messages)
