-- Tasks, their timeline and results, and the transactional outbox and inbox.

CREATE TABLE IF NOT EXISTS tasks (
    task_id          uuid PRIMARY KEY,
    type             text        NOT NULL,
    status           text        NOT NULL,
    state            text,
    progress         integer     NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    priority         integer     NOT NULL DEFAULT 0,
    retry_count      integer     NOT NULL DEFAULT 0,
    max_retries      integer     NOT NULL,
    error            jsonb,
    result           jsonb,
    payload          jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    version          bigint      NOT NULL DEFAULT 1,
    input_hash       text        NOT NULL,
    idempotency_key  text UNIQUE,
    trace_id         text        NOT NULL,
    attempt          integer     NOT NULL DEFAULT 0,
    locked_by        text,
    lease_until      timestamptz,
    wait_event_type  text,
    wait_event_key   text,
    resume_data      jsonb,
    dead_lettered    boolean     NOT NULL DEFAULT false,
    replay_of        uuid,
    replayed_by      uuid
);

CREATE INDEX IF NOT EXISTS tasks_status_idx ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_type_created_idx ON tasks (type, created_at, task_id);
CREATE INDEX IF NOT EXISTS tasks_created_idx ON tasks (created_at, task_id);
CREATE INDEX IF NOT EXISTS tasks_waiting_idx ON tasks (wait_event_type, wait_event_key)
    WHERE status = 'WAITING_FOR_EVENT';

-- One row per status change (kind 'status') and per progress/state report (kind 'progress').
CREATE TABLE IF NOT EXISTS task_events (
    event_id     bigserial   PRIMARY KEY,
    task_id      uuid        NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    kind         text        NOT NULL,
    from_status  text,
    status       text        NOT NULL,
    state        text,
    progress     integer,
    attempt      integer     NOT NULL DEFAULT 0,
    version      bigint      NOT NULL,
    worker_id    text,
    message      text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS task_events_task_idx ON task_events (task_id, event_id);

-- Deliberately not unique on task_id: once-only is the service's promise, and the checker verifies it.
CREATE TABLE IF NOT EXISTS task_results (
    result_id    bigserial   PRIMARY KEY,
    task_id      uuid        NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    result       jsonb       NOT NULL,
    worker_id    text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS task_results_task_idx ON task_results (task_id);

CREATE TABLE IF NOT EXISTS outbox (
    outbox_id    bigserial   PRIMARY KEY,
    message_id   uuid        NOT NULL,
    exchange     text        NOT NULL,
    routing_key  text        NOT NULL,
    body         jsonb       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority     integer     NOT NULL DEFAULT 0,
    task_id      uuid,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at      timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);

CREATE INDEX IF NOT EXISTS outbox_unsent_idx ON outbox (outbox_id) WHERE sent_at IS NULL;

-- Messages whose handling is finished: a second delivery of the same message id is settled unread.
CREATE TABLE IF NOT EXISTS inbox (
    message_id    text        PRIMARY KEY,
    task_id       uuid,
    worker_id     text,
    outcome       text        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
