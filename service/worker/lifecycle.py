"""The worker's side of a task's life in PostgreSQL: claim, report, and settle it.

Each method is one short transaction on the locked task row, so a crash at any point leaves a
state another worker can pick up: a live lease means "someone is on it", an expired lease means
"take it over". Settling methods also write the inbox row of the message, so a second delivery of
an already handled message is recognised and acknowledged unread.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

import asyncpg

from service.db import tasks as db
from service.models import TERMINAL, Status

Row = asyncpg.Record
_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
LOST_RUNS_HEADER = "x-ast-lost-runs"
"""On a re-published job message: the runs its task has lost with their worker so far."""


class Claim(Enum):
    RUN = "run"  # the task is ours: run the job
    SETTLED = "settled"  # nothing to do: ack the message
    BUSY = "busy"  # another live worker holds it: wait and ask again
    UNKNOWN = "unknown"  # no such task: poison message
    DEAD_LETTER = "dead_letter"  # the task failed on claim (delivery limit): reject to the DLQ


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    task: Row | None = None
    reason: str = ""


@dataclass(frozen=True)
class Failure:
    """Why a task failed. The message may quote anything a job met (an exception's text, a file
    name): it is made storable here, or PostgreSQL would refuse the failure itself, every time."""

    code: str
    message: str
    dead_letter: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", storable_text(self.code))
        object.__setattr__(self, "message", storable_text(self.message))

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def storable_text(text: str) -> str:
    """`text` as PostgreSQL can store it: U+0000 and lone surrogates become U+FFFD."""
    return _UNSTORABLE_CHARACTERS.sub("\ufffd", text)


class TaskLifecycle:
    def __init__(self, pool: asyncpg.Pool[Any], worker_id: str, lease_ms: int) -> None:
        self._pool = pool
        self.worker_id = worker_id
        self._lease = timedelta(milliseconds=lease_ms)

    async def claim(
        self, task_id: uuid.UUID, message_id: str | None, delivery_count: int, delivery_limit: int
    ) -> ClaimResult:
        """RUN, SETTLED, BUSY, UNKNOWN or DEAD_LETTER. A task that is ready to run (the usual case)
        is claimed in one call; anything else is decided with the row locked, step by step."""
        if delivery_count < delivery_limit:
            async with self._pool.acquire() as conn:
                started = await db.claim_ready(conn, task_id, message_id or None, self.worker_id, self._lease)
            if started is not None:
                return ClaimResult(Claim.RUN, started)
        return await self._claim_locked(task_id, message_id, delivery_count, delivery_limit)

    async def _claim_locked(
        self, task_id: uuid.UUID, message_id: str | None, delivery_count: int, delivery_limit: int
    ) -> ClaimResult:
        async with self._pool.acquire() as conn, conn.transaction():
            task = await db.lock_for_claim(conn, task_id, message_id or None)
            if task is None:
                return ClaimResult(Claim.UNKNOWN, reason="no such task")
            if task["message_seen"]:
                return ClaimResult(Claim.SETTLED, task, "message already handled")
            status = Status(task["status"])
            if status in TERMINAL or status is Status.WAITING_FOR_EVENT:
                await db.mark_message_done(conn, message_id, task_id, self.worker_id, "skipped")
                return ClaimResult(Claim.SETTLED, task, f"task is {status}")
            if status is Status.IN_PROGRESS and task["lease_alive"]:
                if delivery_count >= delivery_limit:
                    return await self._republish(conn, task, task["lost_runs"], message_id, delivery_count)
                return ClaimResult(Claim.BUSY, task, f"held by {task['locked_by']}")
            # An IN_PROGRESS task with its lease run out: its last run died with its worker.
            lost = task["lost_runs"] + (1 if status is Status.IN_PROGRESS else 0)
            if lost >= delivery_limit:
                failure = Failure(
                    "DELIVERY_LIMIT",
                    f"its worker died {lost} times running it (delivered {delivery_count + 1} times)",
                    dead_letter=True,
                )
                await self._fail(conn, task, failure, message_id, lost_runs=lost)
                return ClaimResult(Claim.DEAD_LETTER, task, "delivery limit reached")
            if delivery_count >= delivery_limit:
                return await self._republish(conn, task, lost, message_id, delivery_count)
            started = await db.change_status(
                conn,
                task,
                Status.IN_PROGRESS,
                worker_id=self.worker_id,
                message="started" if status is not Status.IN_PROGRESS else "taken over after a lost worker",
                attempt=task["attempt"] + 1,
                progress=0,
                state="started",
                locked_by=self.worker_id,
                lease_until=db.LeaseFor(self._lease),
                started_at=task["started_at"] or db.now(),
                lost_runs=lost,
            )
            return ClaimResult(Claim.RUN, started)

    async def _republish(
        self, conn: db.Conn, task: Row, lost: int, message_id: str | None, delivery_count: int
    ) -> ClaimResult:
        """A fresh job message for a task whose message the broker would dead-letter on its next
        return, though fewer than the limit of its runs were lost: the rest of its deliveries died
        unrun, held by a worker that another job crashed. The message carries the lost runs
        (`LOST_RUNS_HEADER`), so the job still runs alone (service/worker/slots.py).

        A task still leased to another worker (most likely one that just died) is left to it: the
        fresh message waits for the lease like any other. Waiting here, with a message the broker
        dead-letters on its next return, would lose it to any crash of this worker meanwhile."""
        reason = (
            f"re-published after {delivery_count + 1} deliveries, {lost} of its runs lost:"
            " the broker's delivery count starts again"
        )
        if task["lease_alive"]:
            row = task
        elif task["status"] == Status.IN_PROGRESS:
            row = await self._unlock_pending(conn, task, reason, "re-published", lost_runs=lost)
        else:
            row = await db.note(conn, task, state="re-published", message=reason)
        await db.enqueue_job(conn, row, headers={LOST_RUNS_HEADER: lost})
        await db.mark_message_done(conn, message_id, task["task_id"], self.worker_id, "republished")
        return ClaimResult(Claim.SETTLED, row, reason)

    async def _owned(self, conn: db.Conn, task_id: uuid.UUID) -> Row | None:
        """The locked task when it is still ours and running; None when cancelled or taken over."""
        task = await db.lock_task(conn, task_id)
        if task is None or task["status"] != Status.IN_PROGRESS or task["locked_by"] != self.worker_id:
            return None
        return task

    async def status_of(self, task_id: uuid.UUID) -> str | None:
        async with self._pool.acquire() as conn:
            value = await conn.fetchval("SELECT status FROM tasks WHERE task_id = $1", task_id)
            return None if value is None else str(value)

    async def report(self, task_id: uuid.UUID, progress: int | None, state: str | None) -> bool:
        """Records progress; False when the task is no longer ours to run. (The lease is the
        heartbeat's job, which runs beside every job at least once a second.)"""
        async with self._pool.acquire() as conn:
            return await db.report_owned_progress(conn, task_id, self.worker_id, progress, state)

    async def heartbeat(self, task_id: uuid.UUID) -> bool:
        async with self._pool.acquire() as conn:
            updated = await conn.execute(
                """UPDATE tasks SET lease_until = clock_timestamp() + $3::interval
                   WHERE task_id = $1 AND locked_by = $2 AND status = 'IN_PROGRESS'""",
                task_id,
                self.worker_id,
                self._lease,
            )
            return str(updated).endswith(" 1")

    async def complete(self, task_id: uuid.UUID, result: dict[str, Any], message_id: str | None) -> bool:
        async with self._pool.acquire() as conn:
            return await db.complete_owned(conn, task_id, self.worker_id, result, message_id)

    async def wait_for_event(
        self, task_id: uuid.UUID, event_type: str, key: str, message_id: str | None
    ) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            task = await self._owned(conn, task_id)
            if task is not None:
                waiting = await db.change_status(
                    conn,
                    task,
                    Status.WAITING_FOR_EVENT,
                    worker_id=self.worker_id,
                    message=f"waiting for {event_type}/{key}",
                    wait_event_type=event_type,
                    wait_event_key=key,
                    locked_by=None,
                    lease_until=None,
                    state="waiting",
                )
                await db.enqueue_event(conn, waiting, "task.waiting")
            await db.mark_message_done(conn, message_id, task_id, self.worker_id, "waiting")
            return task is not None

    async def retry(
        self, task_id: uuid.UUID, failure: Failure, retry_queue_for: Any, message_id: str | None
    ) -> bool:
        """RETRYING and a delayed message, or FAILED when retries are used up. True if retried."""
        async with self._pool.acquire() as conn, conn.transaction():
            task = await self._owned(conn, task_id)
            if task is None:
                await db.mark_message_done(conn, message_id, task_id, self.worker_id, "lost")
                return True
            if task["retry_count"] >= task["max_retries"]:
                exhausted = Failure(
                    "RETRIES_EXHAUSTED",
                    f"gave up after {task['retry_count']} retries; "
                    f"last error {failure.code}: {failure.message}",
                    dead_letter=True,
                )
                await self._fail(conn, task, exhausted, message_id)
                return False
            retry_count = task["retry_count"] + 1
            retrying = await db.change_status(
                conn,
                task,
                Status.RETRYING,
                worker_id=self.worker_id,
                message=f"{failure.code}: {failure.message}",
                retry_count=retry_count,
                error=failure.as_json(),
                locked_by=None,
                lease_until=None,
                state="retrying",
            )
            await db.enqueue_retry(conn, retrying, retry_queue_for(retry_count))
            await db.enqueue_event(conn, retrying, "task.retrying")
            await db.mark_message_done(conn, message_id, task_id, self.worker_id, "retrying")
            return True

    async def fail(self, task_id: uuid.UUID, failure: Failure, message_id: str | None) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            task = await self._owned(conn, task_id)
            if task is None:
                await db.mark_message_done(conn, message_id, task_id, self.worker_id, "lost")
                return False
            await self._fail(conn, task, failure, message_id)
            return True

    async def _fail(
        self, conn: db.Conn, task: Row, failure: Failure, message_id: str | None, **columns: Any
    ) -> None:
        failed = await db.change_status(
            conn,
            task,
            Status.FAILED,
            worker_id=self.worker_id,
            message=f"{failure.code}: {failure.message}",
            error=failure.as_json(),
            dead_lettered=failure.dead_letter,
            state="failed",
            **columns,
        )
        await db.enqueue_event(conn, failed, "task.failed")
        await db.mark_message_done(conn, message_id, task["task_id"], self.worker_id, "failed")

    async def hand_back(
        self, task_id: uuid.UUID, message_id: str | None, reason: str = "handed back: worker shutting down"
    ) -> bool:
        """PENDING again with a fresh job message, the old one acked: on shutdown past the grace
        period, or when an outage of PostgreSQL or RabbitMQ interrupted the job (no retry spent)."""
        async with self._pool.acquire() as conn, conn.transaction():
            task = await self._owned(conn, task_id)
            if task is None:
                return False
            pending = await self._unlock_pending(conn, task, reason, "handed back")
            await db.enqueue_job(conn, pending)
            await db.mark_message_done(conn, message_id, task_id, self.worker_id, "handed_back")
            return True

    async def _unlock_pending(
        self, conn: db.Conn, task: Row, reason: str, state: str, **columns: Any
    ) -> Row:
        """A running task PENDING again, its lease dropped; the caller writes its fresh message."""
        return await db.change_status(
            conn,
            task,
            Status.PENDING,
            worker_id=self.worker_id,
            message=reason,
            locked_by=None,
            lease_until=None,
            state=state,
            **columns,
        )

    async def release_leases(self) -> int:
        """At start: leases this worker id held before a crash are expired, so redeliveries run at once."""
        async with self._pool.acquire() as conn:
            result = await conn.execute(
                """UPDATE tasks SET lease_until = clock_timestamp()
                   WHERE locked_by = $1 AND status = 'IN_PROGRESS'""",
                self.worker_id,
            )
            return int(str(result).split()[-1])

    async def task_result(self, task_id: uuid.UUID) -> tuple[str, dict[str, Any] | None] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, result FROM tasks WHERE task_id = $1", task_id)
            return None if row is None else (row["status"], row["result"])
