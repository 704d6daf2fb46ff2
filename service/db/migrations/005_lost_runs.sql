-- How many runs of a task were lost with their worker (a crash, a kill): counted by the worker that
-- takes the task over. The delivery limit is decided on this count, not on the broker's
-- x-delivery-count, which also counts every message a dying worker merely held (prefetched, or
-- waiting for a slot): with WORKER_CONCURRENCY above 1 that count dead-lettered healthy jobs that
-- had only been in the same worker as one that crashed it (service/worker/processor.py).

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS lost_runs integer NOT NULL DEFAULT 0;
