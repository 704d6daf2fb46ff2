"""The contract's exchanges and queues, declared idempotently by every process that starts.

Retry backoff uses one quorum queue per (job queue, delay): messages wait out the queue's TTL and
are dead-lettered back to the job exchange with the job's routing key. Per-message TTLs in one
queue would block behind the head, so every delay gets its own queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from service.models import TaskType

JOBS_EXCHANGE = "ast.jobs.x"
EVENTS_EXCHANGE = "ast.events.x"
DEAD_LETTER_EXCHANGE = "ast.jobs.dlx"
DEAD_LETTER_QUEUE = "ast.jobs.dlq"


@dataclass(frozen=True)
class JobQueue:
    task_type: TaskType
    name: str

    @property
    def routing_key(self) -> str:
        return f"job.{self.task_type.value}"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.name.removesuffix('.q')}.retry.{delay_ms}ms.q"


JOB_QUEUES: dict[TaskType, JobQueue] = {
    TaskType.INITIALIZE_REPOSITORY: JobQueue(TaskType.INITIALIZE_REPOSITORY, "ast.initialize.repo.q"),
    TaskType.INITIALIZE_IMPACT_ANALYSIS: JobQueue(
        TaskType.INITIALIZE_IMPACT_ANALYSIS, "ast.initialize.impact.q"
    ),
    TaskType.SIMULATE: JobQueue(TaskType.SIMULATE, "ast.simulate.q"),
}


def retry_delay_ms(retry_count: int, base_ms: int) -> int:
    """Exponential backoff: base, 2*base, 4*base, ... for retry 1, 2, 3, ..."""
    return int(base_ms * 2 ** max(0, retry_count - 1))


def retry_delays(max_retries: int, base_ms: int) -> list[int]:
    return [retry_delay_ms(n, base_ms) for n in range(1, max_retries + 1)]


def _quorum_args(**extra: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **extra}


def job_queue_arguments(delivery_limit: int) -> dict[str, Any]:
    """At-least-once dead-lettering needs reject-publish overflow on quorum queues."""
    return _quorum_args(
        **{
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    )


def retry_queue_arguments(queue: JobQueue, delay_ms: int) -> dict[str, Any]:
    return _quorum_args(
        **{
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": JOBS_EXCHANGE,
            "x-dead-letter-routing-key": queue.routing_key,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    )


async def declare_topology(
    channel: AbstractChannel, *, delivery_limit: int, max_retries: int, retry_base_ms: int
) -> AbstractExchange:
    """Declares everything; returns the jobs exchange. Same arguments every time, so it is idempotent."""
    jobs = await channel.declare_exchange(JOBS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    dlq = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True, arguments=_quorum_args())
    await dlq.bind(dlx)
    for queue in JOB_QUEUES.values():
        declared = await channel.declare_queue(
            queue.name, durable=True, arguments=job_queue_arguments(delivery_limit)
        )
        await declared.bind(jobs, routing_key=queue.routing_key)
        for delay in retry_delays(max_retries, retry_base_ms):
            await channel.declare_queue(
                queue.retry_queue(delay), durable=True, arguments=retry_queue_arguments(queue, delay)
            )
    return jobs


def all_queue_names(max_retries: int, retry_base_ms: int) -> list[str]:
    names = [DEAD_LETTER_QUEUE]
    for queue in JOB_QUEUES.values():
        names.append(queue.name)
        names.extend(queue.retry_queue(d) for d in retry_delays(max_retries, retry_base_ms))
    return names
