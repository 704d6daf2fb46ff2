"""The reconciler: re-drives tasks that nothing would move any more.

A commit lost after its message was acknowledged (a database crash), a lost message, or a worker
that died holding a lease can leave a task PENDING, RETRYING or IN_PROGRESS with no message on its
way to a worker. The outbox relay runs one round every `RECONCILE_INTERVAL_MS`; each round writes,
through the outbox, a fresh job message for:

- IN_PROGRESS whose lease ended more than `RECONCILE_LEASE_GRACE_MS` ago (no worker renews it):
  handed back, IN_PROGRESS -> PENDING, the event saying whose lease expired;
- PENDING for longer than `RECONCILE_PENDING_AFTER_MS` with no unsent outbox row;
- RETRYING for longer than its backoff plus `RECONCILE_PENDING_AFTER_MS` with no unsent outbox
  row (its retry message was lost): the job goes straight back to work.

PENDING and RETRYING keep their status (PENDING -> PENDING is no legal move), so their reason is an
event of kind 'progress' carrying the current status. They are left alone while their job queue
holds ready messages: the task may only be waiting in line. A duplicate message is harmless (the
worker's claim waits out a live lease and settles a message whose task is done or handled), but it
holds a worker slot while it waits, so the thresholds stay well above a normal wait.

Rounds are one transaction under `pg_try_advisory_xact_lock` (one reconciler at a time; another
skips its round) and claim rows with `FOR UPDATE SKIP LOCKED`, so a worker's claim is never blocked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from service.broker.topology import JOB_QUEUES
from service.config import Settings
from service.db import tasks as db
from service.models import Status, TaskType

log = logging.getLogger("ast.reconciler")

ReadyMessages = Callable[[str], Awaitable[int]]
"""How many ready messages a queue holds (the relay asks RabbitMQ with a passive declare)."""

_LOCK_ID = 7_311_004
_BATCH = 100
_NO_UNSENT_MESSAGE = "NOT EXISTS (SELECT 1 FROM outbox o WHERE o.sent_at IS NULL AND o.task_id = t.task_id)"
_STALE_LEASES = """SELECT * FROM tasks t
    WHERE t.status = 'IN_PROGRESS'
      AND coalesce(t.lease_until, t.updated_at) < clock_timestamp() - $1::interval
    ORDER BY t.updated_at LIMIT $2 FOR UPDATE SKIP LOCKED"""
_LOST_PENDING = f"""SELECT * FROM tasks t
    WHERE t.status = 'PENDING' AND t.type = ANY($3::text[])
      AND t.updated_at < clock_timestamp() - $1::interval AND {_NO_UNSENT_MESSAGE}
    ORDER BY t.updated_at LIMIT $2 FOR UPDATE SKIP LOCKED"""  # noqa: S608 - constant text
_LOST_RETRIES = f"""SELECT * FROM tasks t
    WHERE t.status = 'RETRYING' AND t.type = ANY($3::text[])
      AND t.updated_at < clock_timestamp() - $1::interval
          - ($4::float8 * power(2, greatest(t.retry_count - 1, 0))) * interval '1 millisecond'
      AND {_NO_UNSENT_MESSAGE}
    ORDER BY t.updated_at LIMIT $2 FOR UPDATE SKIP LOCKED"""  # noqa: S608 - constant text


@dataclass(frozen=True)
class Redriven:
    """One task the reconciler re-published: its status when found, and why."""

    task_id: uuid.UUID
    status: Status
    reason: str


class Reconciler:
    def __init__(self, settings: Settings, ready_messages: ReadyMessages | None = None) -> None:
        self._settings = settings
        self._ready_messages = ready_messages
        self._pending_after = timedelta(milliseconds=settings.reconcile_pending_after_ms)
        self._lease_grace = timedelta(milliseconds=settings.reconcile_lease_grace_ms)

    async def run_once(self, pool: asyncpg.Pool[Any]) -> list[Redriven]:
        """One round; [] when another reconciler holds the lock."""
        idle = await self._idle_types()
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_ID):
                return []
            redriven = await self._round(conn, idle)
        for item in redriven:
            log.warning(
                "task re-driven: %s", item.reason, extra={"taskId": str(item.task_id), "step": "reconcile"}
            )
        return redriven

    async def _round(self, conn: db.Conn, idle: list[str]) -> list[Redriven]:
        stale = await conn.fetch(_STALE_LEASES, self._lease_grace, _BATCH)
        redriven = [await self._hand_back(conn, task) for task in stale]
        for task in await conn.fetch(_LOST_PENDING, self._pending_after, _BATCH, idle):
            redriven.append(await self._republish(conn, task, "PENDING with no job message in sight"))
        base_ms = float(self._settings.retry_base_ms)
        for task in await conn.fetch(_LOST_RETRIES, self._pending_after, _BATCH, idle, base_ms):
            redriven.append(await self._republish(conn, task, "RETRYING past its backoff, no message"))
        return redriven

    async def _idle_types(self) -> list[str]:
        """Task types whose job queue holds no ready message (every type when nobody can tell)."""
        if self._ready_messages is None:
            return [kind.value for kind in TaskType]
        return [kind.value for kind in TaskType if await self._ready_messages(JOB_QUEUES[kind].name) == 0]

    async def _hand_back(self, conn: db.Conn, task: asyncpg.Record) -> Redriven:
        lease = task["lease_until"]
        reason = (
            f"re-driven: the lease of {task['locked_by']} expired"
            f"{'' if lease is None else ' at ' + lease.isoformat(timespec='seconds')} and nobody renewed it"
        )
        pending = await db.change_status(
            conn, task, Status.PENDING, message=reason, locked_by=None, lease_until=None, state="re-driven"
        )
        await db.enqueue_job(conn, pending)
        return Redriven(task["task_id"], Status.IN_PROGRESS, reason)

    async def _republish(self, conn: db.Conn, task: asyncpg.Record, why: str) -> Redriven:
        reason = f"re-published: {why}"
        noted = await db.note(conn, task, state="re-published", message=reason)
        await db.enqueue_job(conn, noted)
        return Redriven(task["task_id"], Status(task["status"]), reason)
