-- Retention (service/retention.py) finds old terminal tasks by when they ended, and deletes the
-- outbox and inbox rows of each; task_events and task_results go with the task (ON DELETE CASCADE).

CREATE INDEX IF NOT EXISTS tasks_terminal_completed_idx ON tasks (completed_at)
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');
CREATE INDEX IF NOT EXISTS outbox_task_idx ON outbox (task_id);
CREATE INDEX IF NOT EXISTS inbox_task_idx ON inbox (task_id);
