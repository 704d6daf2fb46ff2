"""The Celery side: one task doing the bare pipeline's writes (3 × tx[update + event]).

prefork, acks_late, publisher confirms, a quorum queue; results ignored (the database is the
result). BENCH_AMQP_URL and BENCH_DSN name the stack.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from celery import Celery

QUEUE = "bench.celery.q"

app = Celery("benchjobs", broker=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    task_default_queue_type="quorum",
    worker_detect_quorum_queues=True,
    broker_transport_options={"confirm_publish": True},
    broker_pool_limit=64,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_serializer="json",
    accept_content=["json"],
)

STEPS = (
    (
        "UPDATE bench.tasks SET status = 'IN_PROGRESS', started_at = clock_timestamp(),"
        " updated_at = clock_timestamp(), version = version + 1 WHERE task_id = %s RETURNING version",
        "INSERT INTO bench.task_events (task_id, from_status, status, version)"
        " VALUES (%s, 'PENDING', 'IN_PROGRESS', %s)",
    ),
    (
        "UPDATE bench.tasks SET progress = 100, updated_at = clock_timestamp(), version = version + 1"
        " WHERE task_id = %s RETURNING version",
        "INSERT INTO bench.task_events (task_id, status, progress, version)"
        " VALUES (%s, 'IN_PROGRESS', 100, %s)",
    ),
    (
        "UPDATE bench.tasks SET status = 'COMPLETED', completed_at = clock_timestamp(),"
        " updated_at = clock_timestamp(), version = version + 1 WHERE task_id = %s RETURNING version",
        "INSERT INTO bench.task_events (task_id, from_status, status, progress, version)"
        " VALUES (%s, 'IN_PROGRESS', 'COMPLETED', 100, %s)",
    ),
)

_connection: Any = None


def connection() -> Any:
    """One connection per pool process, opened on its first job (after the fork)."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(os.environ["BENCH_DSN"], autocommit=True)
    return _connection


@app.task(name="bench.job")  # type: ignore[untyped-decorator]
def job(task_id: str) -> None:
    conn = connection()
    for update, event in STEPS:
        with conn.transaction():
            row = conn.execute(update, (task_id,)).fetchone()
            conn.execute(event, (task_id, row[0]))
