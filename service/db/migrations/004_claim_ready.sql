-- The worker's claim of a task that is ready to run (PENDING or RETRYING, its message not handled
-- yet), as one call: the row lock, the inbox check, the move to IN_PROGRESS with its lease and its
-- task_events row, in the one transaction of the calling statement. Each statement here takes a
-- fresh snapshot (READ COMMITTED), so the inbox check sees what the lock holder committed. No row
-- back: not ready (unknown, handled, running, terminal, waiting); the worker then takes the full
-- path (service/worker/lifecycle.py), which decides what to do with the message.

CREATE OR REPLACE FUNCTION ast_claim_ready(p_task uuid, p_message text, p_worker text, p_lease interval)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
DECLARE
    current tasks;
    started tasks;
BEGIN
    SELECT * INTO current FROM tasks WHERE task_id = p_task FOR UPDATE;
    IF NOT FOUND OR current.status NOT IN ('PENDING', 'RETRYING') THEN
        RETURN;
    END IF;
    IF p_message IS NOT NULL AND EXISTS (SELECT 1 FROM inbox WHERE message_id = p_message) THEN
        RETURN;
    END IF;
    UPDATE tasks SET status = 'IN_PROGRESS', attempt = attempt + 1, progress = 0, state = 'started',
                     locked_by = p_worker, lease_until = clock_timestamp() + p_lease,
                     started_at = coalesce(started_at, clock_timestamp()),
                     version = version + 1, updated_at = clock_timestamp()
    WHERE task_id = p_task
    RETURNING * INTO started;
    INSERT INTO task_events (task_id, kind, from_status, status, state, progress, attempt, version,
                             worker_id, message)
    VALUES (started.task_id, 'status', current.status, started.status, started.state, started.progress,
            started.attempt, started.version, p_worker, 'started');
    RETURN NEXT started;
END
$$;
