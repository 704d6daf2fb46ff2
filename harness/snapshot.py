"""The final state of a run, read from PostgreSQL and RabbitMQ into plain frozen values.

The checker is a pure function of (history, snapshot), so everything it may look at is read here
once. The DLQ's messages are read through the management API with `ack_requeue_true`: they go
back to the queue, so reading never changes what a later reader (or a replay) sees. Job and retry
queues are not peeked: their messages count deliveries (a quorum queue's `x-delivery-limit`), so
a peek could push a job into the DLQ; for them depth is enough.

Management statistics lag (`collect_statistics_interval`, 5 s by default), so when an AMQP URL is
given, the ready counts of job and retry queues come from passive declares, which are exact.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import asyncpg
import httpx

DLQ = "ast.jobs.dlq"
JOB_QUEUES: frozenset[str] = frozenset({"ast.initialize.repo.q", "ast.initialize.impact.q", "ast.simulate.q"})
RETRY_QUEUE = re.compile(r"^(?P<job>.+)\.retry\.(?P<delay>\d+)ms\.q$")
UNSETTLED: frozenset[str] = frozenset({"PENDING", "IN_PROGRESS", "RETRYING"})
DLQ_PEEK_MARGIN = 100


class SnapshotError(Exception):
    """A store could not be read at all; the snapshot records it and checkers answer `unknown`."""


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    type: str
    status: str
    progress: int
    retry_count: int
    max_retries: int
    version: int
    attempt: int = 0
    priority: int = 0
    payload: Any = None
    result: Any = None
    error: Any = None
    idempotency_key: str | None = None
    dead_lettered: bool = False
    replay_of: str | None = None
    replayed_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class EventRow:
    event_id: int
    task_id: str
    kind: str
    status: str
    version: int
    from_status: str | None = None
    progress: int | None = None
    attempt: int = 0
    state: str | None = None
    worker_id: str | None = None
    message: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class ResultRow:
    result_id: int
    task_id: str
    worker_id: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    outbox_id: int
    message_id: str
    exchange: str
    routing_key: str
    task_id: str | None = None
    created_at: str | None = None
    sent_at: str | None = None
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class InboxRow:
    message_id: str
    outcome: str
    task_id: str | None = None
    worker_id: str | None = None


@dataclass(frozen=True)
class QueueDepth:
    """`kind` is job, retry, dlq or other; `messages` is ready plus unacknowledged."""

    name: str
    kind: str
    messages: int
    ready: int = 0
    unacked: int = 0


@dataclass(frozen=True)
class QueueMessage:
    """A message read without consuming it; `task_id` is None when the body is not a job message."""

    queue: str
    task_id: str | None
    body: Any
    message_id: str | None = None
    redelivered: bool = False
    death_reason: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything the checker may look at. A store that could not be read leaves an error here."""

    tasks: tuple[TaskRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    results: tuple[ResultRow, ...] = ()
    outbox: tuple[OutboxRow, ...] = ()
    inbox: tuple[InboxRow, ...] = ()
    queues: tuple[QueueDepth, ...] = ()
    dlq_messages: tuple[QueueMessage, ...] = ()
    dlq_complete: bool = True
    postgres_error: str | None = None
    rabbitmq_error: str | None = None
    taken_at: float = field(default_factory=time.time)

    @cached_property
    def tasks_by_id(self) -> Mapping[str, TaskRow]:
        return {t.task_id: t for t in self.tasks}

    @cached_property
    def events_by_task(self) -> Mapping[str, tuple[EventRow, ...]]:
        """Each task's events, oldest first (by event_id, the order they were committed)."""
        grouped: dict[str, list[EventRow]] = defaultdict(list)
        for event in sorted(self.events, key=lambda e: e.event_id):
            grouped[event.task_id].append(event)
        return {k: tuple(v) for k, v in grouped.items()}

    @cached_property
    def results_by_task(self) -> Mapping[str, tuple[ResultRow, ...]]:
        grouped: dict[str, list[ResultRow]] = defaultdict(list)
        for result in self.results:
            grouped[result.task_id].append(result)
        return {k: tuple(v) for k, v in grouped.items()}

    def queue(self, name: str) -> QueueDepth | None:
        return next((q for q in self.queues if q.name == name), None)

    def summary(self) -> dict[str, Any]:
        """Sizes only, for results.json."""
        return {
            "takenAt": self.taken_at,
            "tasks": len(self.tasks),
            "events": len(self.events),
            "results": len(self.results),
            "outboxUnsent": sum(1 for o in self.outbox if o.sent_at is None),
            "queues": {q.name: q.messages for q in self.queues},
            "dlqMessages": len(self.dlq_messages),
            "dlqComplete": self.dlq_complete,
            "postgresError": self.postgres_error,
            "rabbitmqError": self.rabbitmq_error,
        }


def queue_kind(name: str) -> str:
    if name == DLQ:
        return "dlq"
    if name in JOB_QUEUES:
        return "job"
    if RETRY_QUEUE.match(name):
        return "retry"
    return "other"


# --- PostgreSQL ---------------------------------------------------------------------------------

_TASKS_SQL = """SELECT task_id::text, type, status, progress, retry_count, max_retries, version, attempt,
    priority, payload, result, error, idempotency_key, dead_lettered, replay_of::text, replayed_by::text,
    created_at, updated_at FROM tasks"""
_EVENTS_SQL = """SELECT event_id, task_id::text, kind, status, version, from_status, progress, attempt, state,
    worker_id, message, created_at FROM task_events ORDER BY event_id"""
_RESULTS_SQL = "SELECT result_id, task_id::text, worker_id, created_at FROM task_results ORDER BY result_id"
_OUTBOX_SQL = """SELECT outbox_id, message_id::text, exchange, routing_key, task_id::text, created_at,
    sent_at, attempts, last_error FROM outbox ORDER BY outbox_id"""
_INBOX_SQL = "SELECT message_id, outcome, task_id::text, worker_id FROM inbox"


def _plain(value: Any) -> Any:
    """Timestamps as ISO text and jsonb as Python values, so rows are JSON-ready evidence."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r.items()} for r in records]


async def _set_json_codecs(conn: asyncpg.Connection[Any]) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@dataclass(frozen=True)
class PostgresState:
    tasks: tuple[TaskRow, ...]
    events: tuple[EventRow, ...]
    results: tuple[ResultRow, ...]
    outbox: tuple[OutboxRow, ...]
    inbox: tuple[InboxRow, ...]


async def read_postgres(dsn: str) -> PostgresState:
    """Reads all five tables in one REPEATABLE READ transaction, so they agree with each other."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await _set_json_codecs(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            tasks, events, results, outbox, inbox = [
                _rows(await conn.fetch(sql))
                for sql in (_TASKS_SQL, _EVENTS_SQL, _RESULTS_SQL, _OUTBOX_SQL, _INBOX_SQL)
            ]
    finally:
        await conn.close()
    return PostgresState(
        tuple(TaskRow(**r) for r in tasks),
        tuple(EventRow(**r) for r in events),
        tuple(ResultRow(**r) for r in results),
        tuple(OutboxRow(**r) for r in outbox),
        tuple(InboxRow(**r) for r in inbox),
    )


# --- RabbitMQ -----------------------------------------------------------------------------------


def management_client(management_url: str, timeout_s: float = 10.0) -> httpx.AsyncClient:
    """An httpx client for the management API; credentials in the URL become basic auth."""
    parts = urlsplit(management_url)
    auth = httpx.BasicAuth(parts.username or "guest", parts.password or "guest")
    netloc = parts.hostname or "127.0.0.1"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return httpx.AsyncClient(base_url=base, auth=auth, timeout=timeout_s)


async def read_queue_depths(http: httpx.AsyncClient, vhost: str) -> tuple[QueueDepth, ...]:
    response = await http.get(
        f"/api/queues/{quote(vhost, safe='')}",
        params={"columns": "name,messages,messages_ready,messages_unacknowledged"},
    )
    response.raise_for_status()
    return tuple(
        QueueDepth(
            name=q["name"],
            kind=queue_kind(q["name"]),
            messages=int(q.get("messages") or 0),
            ready=int(q.get("messages_ready") or 0),
            unacked=int(q.get("messages_unacknowledged") or 0),
        )
        for q in response.json()
    )


def _decode_payload(raw: dict[str, Any]) -> Any:
    payload = raw.get("payload", "")
    if raw.get("payload_encoding") == "base64":
        payload = base64.b64decode(payload).decode("utf-8", "replace")
    try:
        return json.loads(payload)
    except (TypeError, ValueError):
        return payload


def _death_reason(properties: dict[str, Any]) -> str | None:
    deaths = (properties.get("headers") or {}).get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        return f"{deaths[0].get('reason')} from {deaths[0].get('queue')}"
    return None


def _queue_message(queue: str, raw: dict[str, Any]) -> QueueMessage:
    body = _decode_payload(raw)
    task_id = body.get("taskId") if isinstance(body, dict) else None
    properties = raw.get("properties") or {}
    return QueueMessage(
        queue=queue,
        task_id=str(task_id) if task_id else None,
        body=body,
        message_id=properties.get("message_id"),
        redelivered=bool(raw.get("redelivered")),
        death_reason=_death_reason(properties),
    )


async def peek_messages(
    http: httpx.AsyncClient, vhost: str, queue: str, count: int
) -> tuple[QueueMessage, ...]:
    """Reads up to `count` messages and puts them back (`ack_requeue_true`)."""
    if count <= 0:
        return ()
    response = await http.post(
        f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}/get",
        json={"count": count, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000},
    )
    response.raise_for_status()
    return tuple(_queue_message(queue, raw) for raw in response.json())


async def exact_ready_counts(amqp_url: str, names: list[str]) -> dict[str, int]:
    """Ready counts by passive declare: exact, unlike management statistics. Missing queues are left out."""
    counts: dict[str, int] = {}
    connection = await aio_pika.connect(amqp_url, timeout=10)
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


def _with_exact(depths: tuple[QueueDepth, ...], exact: Mapping[str, int]) -> tuple[QueueDepth, ...]:
    out = []
    for q in depths:
        ready = max(q.ready, exact.get(q.name, 0)) if q.name in exact else q.ready
        out.append(QueueDepth(q.name, q.kind, max(q.messages, ready + q.unacked), ready, q.unacked))
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
    async with management_client(management_url) as http:
        depths = await read_queue_depths(http, vhost)
        if amqp_url:
            names = [q.name for q in depths if q.kind in {"job", "retry", "dlq"}]
            depths = _with_exact(depths, await exact_ready_counts(amqp_url, names))
        dlq = next((q for q in depths if q.kind == "dlq"), None)
        if not peek_dlq or dlq is None:
            return RabbitState(depths, (), dlq is None or dlq.messages == 0)
        messages = await peek_messages(http, vhost, DLQ, dlq.messages + DLQ_PEEK_MARGIN)
    return RabbitState(depths, messages, len(messages) >= dlq.messages)


# --- the snapshot and settling ------------------------------------------------------------------


async def take_snapshot(
    postgres_dsn: str,
    management_url: str,
    *,
    vhost: str = "/",
    amqp_url: str | None = None,
    peek_dlq: bool = True,
) -> Snapshot:
    """Reads both stores; a store that fails is recorded as an error, never raised."""
    pg, rabbit = await asyncio.gather(
        read_postgres(postgres_dsn),
        read_rabbitmq(management_url, vhost=vhost, amqp_url=amqp_url, peek_dlq=peek_dlq),
        return_exceptions=True,
    )
    values: dict[str, Any] = {}
    if isinstance(pg, BaseException):
        values["postgres_error"] = f"{type(pg).__name__}: {pg}"
    else:
        values.update(tasks=pg.tasks, events=pg.events, results=pg.results, outbox=pg.outbox, inbox=pg.inbox)
    if isinstance(rabbit, BaseException):
        values["rabbitmq_error"] = f"{type(rabbit).__name__}: {rabbit}"
        values["dlq_complete"] = False
    else:
        values.update(
            queues=rabbit.queues, dlq_messages=rabbit.dlq_messages, dlq_complete=rabbit.dlq_complete
        )
    return Snapshot(**values)


def unsettled_reasons(snapshot: Snapshot, *, still_running: frozenset[str] = frozenset()) -> list[str]:
    """Why the system is not settled yet; empty when it is. `still_running` tasks may stay unsettled."""
    reasons = [
        f"{s} unreadable: {e}"
        for s, e in (("postgres", snapshot.postgres_error), ("rabbitmq", snapshot.rabbitmq_error))
        if e
    ]
    busy = [t.task_id for t in snapshot.tasks if t.status in UNSETTLED and t.task_id not in still_running]
    if busy:
        reasons.append(f"{len(busy)} tasks PENDING/IN_PROGRESS/RETRYING (e.g. {busy[0]})")
    unsent = sum(1 for o in snapshot.outbox if o.sent_at is None)
    if unsent:
        reasons.append(f"{unsent} outbox rows unsent")
    reasons.extend(
        f"queue {q.name} holds {q.messages}"
        for q in snapshot.queues
        if q.kind in {"job", "retry"} and q.messages
    )
    return reasons


@dataclass(frozen=True)
class Settled:
    """The last snapshot taken, whether the system settled, and what was still moving if not."""

    snapshot: Snapshot
    settled: bool
    waited_s: float
    reasons: tuple[str, ...] = ()


async def wait_until_settled(
    postgres_dsn: str,
    management_url: str,
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.5,
    vhost: str = "/",
    amqp_url: str | None = None,
    still_running: frozenset[str] = frozenset(),
) -> Settled:
    """Polls until nothing is in flight, or the deadline; then takes the full snapshot (with the DLQ).

    WAITING_FOR_EVENT and terminal tasks count as settled; whether a waiting task was *meant* to
    wait is the checker's question (invariant 1), not this one's.
    """
    start = time.monotonic()
    while True:
        light = await take_snapshot(
            postgres_dsn, management_url, vhost=vhost, amqp_url=amqp_url, peek_dlq=False
        )
        timed_out = time.monotonic() - start >= timeout_s
        if timed_out or not unsettled_reasons(light, still_running=still_running):
            # The full snapshot must agree too: queue depths it reads may trail the light one.
            final = await take_snapshot(postgres_dsn, management_url, vhost=vhost, amqp_url=amqp_url)
            reasons = unsettled_reasons(final, still_running=still_running)
            if timed_out or not reasons:
                return Settled(final, not reasons, time.monotonic() - start, tuple(reasons))
        await asyncio.sleep(poll_s)
