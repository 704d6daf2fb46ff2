"""Submit N jobs to the Celery app from C threads: insert the task, then `apply_async` (confirmed).

`python driver.py JOBS CONCURRENCY OUT.json`; writes {"records": [[task_id, start, end], ...]
(epoch s), "cpu_s": the driver's own CPU time} (it has exited before its parent can read that).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
import uuid

import psycopg
from benchjobs import job

INSERT_TASK = (
    "INSERT INTO bench.tasks (task_id, type, status, payload) VALUES (%s, 'simulate', 'PENDING', %s::jsonb)"
)
PAYLOAD = json.dumps({"durationMs": 0, "steps": 1})


def main() -> None:
    jobs, concurrency, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()
    remaining = iter(range(jobs))
    records: list[list[object]] = []
    connections = [psycopg.connect(os.environ["BENCH_DSN"], autocommit=True) for _ in range(concurrency)]
    job.apply_async  # noqa: B018 - the app and its producer pool load before the clock starts

    def submitter(conn: psycopg.Connection) -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            task_id = str(uuid.uuid4())
            start = time.time()
            conn.execute(INSERT_TASK, (task_id, PAYLOAD))
            job.apply_async(args=[task_id], task_id=task_id)
            with lock:
                records.append([task_id, start, time.time()])

    threads = [threading.Thread(target=submitter, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for conn in connections:
        conn.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(out, "w") as handle:
        json.dump({"records": records, "cpu_s": usage.ru_utime + usage.ru_stime}, handle)
    print(f"submitted {len(records)}", flush=True)


if __name__ == "__main__":
    main()
