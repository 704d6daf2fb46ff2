"""Request and response bodies of the HTTP API: camelCase on the wire, snake_case in Python.

Requests forbid unknown fields, so a typo is a 422 instead of a silently ignored option.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt
from pydantic.alias_generators import to_camel

from service.models import Status, TaskType


def storable_text(value: Any) -> Any:
    """Rejects text PostgreSQL cannot store (U+0000, lone surrogates) anywhere in a JSON value.

    Without this the database refuses it mid-transaction and the client gets a 503 ("retry
    later") for input that will never succeed. Iterative, so a deeply nested body cannot
    exhaust the stack.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ValueError("text must not contain U+0000 (NUL)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None


StorableJson = Annotated[Any, AfterValidator(storable_text)]
StorableText = Annotated[str, AfterValidator(storable_text)]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Request(_Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TaskSubmit(_Request):
    type: TaskType
    payload: Annotated[dict[str, Any], AfterValidator(storable_text)]
    priority: StrictInt = Field(default=0, ge=0, le=9)


class TaskAccepted(_Wire):
    task_id: uuid.UUID
    status: Status


class Task(_Wire):
    task_id: uuid.UUID
    type: str
    status: Status
    state: str | None
    progress: int
    priority: int
    retry_count: int
    max_retries: int
    error: dict[str, Any] | None
    result: Any
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Task:
        return cls.model_validate({name: row[name] for name in cls.model_fields})


class TaskPage(_Wire):
    items: list[Task]
    next_cursor: str | None


class TaskEvent(_Wire):
    event_id: int
    kind: str
    from_status: str | None
    status: str
    state: str | None
    progress: int | None
    attempt: int
    version: int
    worker_id: str | None
    message: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> TaskEvent:
        return cls.model_validate({name: row[name] for name in cls.model_fields})


class TaskEvents(_Wire):
    items: list[TaskEvent]


class ExternalEvent(_Request):
    type: StorableText = Field(min_length=1, max_length=200)
    key: StorableText = Field(min_length=1, max_length=500)
    payload: StorableJson = None


class Resumed(_Wire):
    resumed: int


class DlqReplayRequest(_Request):
    task_ids: list[uuid.UUID] | None = Field(default=None, max_length=10_000)


class DlqReplayed(_Wire):
    replayed: int
    task_ids: list[uuid.UUID]
    skipped: int = 0


class QueueDepth(_Wire):
    name: str
    messages: int | None
    consumers: int | None


class QueuesReport(_Wire):
    queues: list[QueueDepth]
    tasks: dict[str, int]


class HealthStatus(_Wire):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
