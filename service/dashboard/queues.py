"""The broker's side of a refresh: each queue's ready / unacked / consumers, and a peek at the DLQ.

Ready and consumers come from passive declares on one channel (exact, as `GET /queues` reports);
unacked only the management API knows, read in one call when `RABBIT_MANAGEMENT_URL` is set. The DLQ
is peeked (messages fetched unacked, then handed back by closing the channel) only when its depth
changed: each peek counts as a delivery of the messages it reads, and a quorum queue on RabbitMQ 4
drops a message past its default delivery limit, so an open page must not peek every second.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import ChannelNotFoundEntity

from service.api.broker import BrokerLink
from service.broker.topology import DEAD_LETTER_QUEUE
from service.dashboard.model import DeadLetter, QueueRow

PEEK_LIMIT = 50
MANAGEMENT_TIMEOUT_S = 2.0
_READY = tuple[int | None, int | None]


def queue_kind(name: str) -> str:
    if name == DEAD_LETTER_QUEUE:
        return "dead-letter"
    return "retry" if ".retry." in name else "job"


async def declared_counts(broker: BrokerLink, names: list[str]) -> dict[str, _READY]:
    """(ready, consumers) of each queue; (None, None) for one that does not exist."""
    found: dict[str, _READY] = {}
    pending = list(names)
    while pending:
        async with broker.channel() as channel:
            while pending:
                name = pending.pop(0)
                found[name] = await _declare(channel, name)
                if found[name] == (None, None):
                    break  # a missing queue closed the channel: the rest get a new one
    return found


async def _declare(channel: AbstractChannel, name: str) -> _READY:
    try:
        queue = await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return None, None
    result = queue.declaration_result
    return result.message_count, result.consumer_count


async def unacked_counts(management_url: str, vhost: str) -> dict[str, int]:
    """`messages_unacknowledged` of every queue in the vhost, from one management call."""
    url = f"{management_url.rstrip('/')}/api/queues/{quote(vhost or '/', safe='')}"
    async with httpx.AsyncClient(timeout=MANAGEMENT_TIMEOUT_S) as client:
        response = await client.get(url, params={"columns": "name,messages_unacknowledged"})
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()
    return {str(row["name"]): int(row.get("messages_unacknowledged") or 0) for row in rows}


def queue_rows(
    names: list[str], declared: dict[str, _READY], unacked: dict[str, int] | None
) -> list[QueueRow]:
    rows = []
    for name in names:
        ready, consumers = declared.get(name, (None, None))
        rows.append(QueueRow(name, queue_kind(name), ready,
                             None if unacked is None or ready is None else unacked.get(name, 0), consumers))
    return rows


@dataclass
class DlqPeek:
    """The last peek at the DLQ, kept until its depth changes."""

    depth: int | None = None
    letters: list[DeadLetter] = field(default_factory=list)

    def stale(self, depth: int | None) -> bool:
        return depth != self.depth


async def peek_dlq(broker: BrokerLink, limit: int = PEEK_LIMIT) -> list[DeadLetter]:
    """Up to `limit` messages from the head of the DLQ, all handed back when the channel closes."""
    letters = []
    async with broker.channel() as channel:
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
        for _ in range(limit):
            message = await queue.get(no_ack=False, fail=False, timeout=2)
            if message is None:
                break
            letters.append(dead_letter(message))
    return letters


def dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    raw = headers.get("x-death")
    deaths: list[dict[str, Any]] = [d for d in raw if isinstance(d, dict)] if isinstance(raw, list) else []
    first = deaths[0] if deaths else {}
    reason = f"{_text(first.get('reason'))} from {_text(first.get('queue'))}" if first else ""
    count = sum(_int(d.get("count")) for d in deaths)
    task_id, task_type = _body_fields(message.body)
    return DeadLetter(task_id, task_type, reason, count, _text(headers.get("x-ast-reason"))[:500])


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _body_fields(body: bytes) -> tuple[uuid.UUID | None, str]:
    """(taskId, type) of a job message; (None, "") for a poison message that names no task."""
    try:
        parsed = json.loads(body)
        return uuid.UUID(str(parsed["taskId"])), str(parsed.get("type") or "")[:100]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, ""
