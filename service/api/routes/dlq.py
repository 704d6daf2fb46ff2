"""`POST /dlq/replay`: dead-lettered jobs go back to work as new tasks.

Terminal is final, so the FAILED task stays FAILED; the replay is a new task with the same type,
payload and priority, `replay_of` pointing back, and the old task's `replayed_by` pointing forward.
A message is acked only after that transaction commits, so a crash in between leaves it in the DLQ
(and a second replay of it finds `replayed_by` set and only acks it).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from fastapi import APIRouter

from service.api import queries
from service.api.deps import ACQUIRE_TIMEOUT_S, Broker, Pool
from service.api.json_body import StrictJsonRoute
from service.api.openapi import errors
from service.api.schemas import DlqReplayed, DlqReplayRequest
from service.broker.topology import DEAD_LETTER_QUEUE
from service.db.tasks import NewTask, insert_task, lock_task
from service.models import Status, TaskType

log = logging.getLogger("ast.api")
router = APIRouter(tags=["dlq"], route_class=StrictJsonRoute)

MAX_MESSAGES_PER_REPLAY = 10_000


@dataclass
class _Outcome:
    new_task_ids: list[uuid.UUID] = field(default_factory=list)
    kept: list[AbstractIncomingMessage] = field(default_factory=list)


@router.post("/dlq/replay", status_code=202, response_model=DlqReplayed, responses=errors(422, 503))
async def replay_dlq(broker: Broker, pool: Pool, body: DlqReplayRequest | None = None) -> DlqReplayed:
    """Replays every DLQ message (or those of `taskIds`); others are put back in the queue."""
    wanted = set(body.task_ids) if body is not None and body.task_ids is not None else None
    outcome = _Outcome()
    async with broker.channel() as channel:
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
        count = queue.declaration_result.message_count or 0
        try:
            await _drain(queue, min(count, MAX_MESSAGES_PER_REPLAY), wanted, pool, outcome)
        finally:
            for message in outcome.kept:
                await message.nack(requeue=True)
    return DlqReplayed(replayed=len(outcome.new_task_ids), task_ids=outcome.new_task_ids,
                       skipped=len(outcome.kept))


async def _drain(
    queue: AbstractQueue, count: int, wanted: set[uuid.UUID] | None, pool: asyncpg.Pool[Any],
    outcome: _Outcome,
) -> None:
    for _ in range(count):
        message = await queue.get(no_ack=False, fail=False, timeout=5)
        if message is None:
            return
        task_id = _task_id_of(message)
        if task_id is None or (wanted is not None and task_id not in wanted):
            outcome.kept.append(message)
            continue
        settled, new_id = await _replay_one(pool, task_id)
        if not settled:
            outcome.kept.append(message)
            continue
        await message.ack()
        if new_id is not None:
            outcome.new_task_ids.append(new_id)


def _task_id_of(message: AbstractIncomingMessage) -> uuid.UUID | None:
    """None for a message that names no task; a deeply nested body is one (RecursionError), and
    must not fail the replay (and every later one) with the message left unsettled."""
    try:
        return uuid.UUID(str(json.loads(message.body)["taskId"]))
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


async def _replay_one(pool: asyncpg.Pool[Any], task_id: uuid.UUID) -> tuple[bool, uuid.UUID | None]:
    """(settled, new task id). Settled without a new task: already replayed (a duplicate message).

    Only a FAILED task is replayed; a message of an unknown or still-running task stays in the DLQ.
    """
    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
        old = await lock_task(conn, task_id)
        if old is None or old["status"] != Status.FAILED.value:
            return False, None
        if old["replayed_by"] is not None:
            return True, None
        new = await insert_task(conn, NewTask(
            TaskType(old["type"]), old["payload"], old["priority"], old["max_retries"], old["input_hash"],
            replay_of=task_id,
        ))
        assert new is not None
        await conn.execute(queries.MARK_REPLAYED, task_id, new["task_id"])
    log.info("task replayed from the DLQ as %s", new["task_id"],
             extra={"taskId": str(task_id), "type": old["type"], "step": "replay"})
    return True, new["task_id"]
