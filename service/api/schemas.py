"""Request and response bodies of the HTTP API: camelCase on the wire, snake_case in Python.

Requests forbid unknown fields, so a typo is a 422 instead of a silently ignored option. What a
model validates and what `/openapi.json` publishes for it are one declaration: where the door checks
a rule in code (a payload per task type, storable text), the published schema is derived from the
same models and constants (see `service.api.openapi`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

from service.models import Status, TaskType
from service.payloads import (
    ACCEPTED_JSON,
    EVENT_JSON,
    ImpactPayload,
    RepositoryPayload,
    SimulatePayload,
    bounded_json,
    json_integer,
    readable_json,
    storable_text,
)

NUL_FREE = "^[^\\x00]*$"
"""The published form of `storable_text`'s rule that matters to a JSON client: no U+0000."""
STORABLE_JSON_REF = "#/components/schemas/StorableJson"
"""Any JSON value with storable strings and keys; `service.api.openapi` publishes the component."""

# Free-form values and text are checked where they enter, so PostgreSQL never refuses them
# mid-transaction (a 503 "retry later" for input that will never succeed) and a read never fails.
EventJson = Annotated[
    Any, AfterValidator(bounded_json(EVENT_JSON)), WithJsonSchema({"allOf": [{"$ref": STORABLE_JSON_REF}]})
]
StorableText = Annotated[str, AfterValidator(storable_text), Field(json_schema_extra={"pattern": NUL_FREE})]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class _Request(_Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. VALIDATION_ERROR, TASK_NOT_FOUND")
    message: str
    details: Any = Field(description="what the code needs to be acted on (e.g. each invalid field), or null")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail


class SimulateTaskSubmit(_Request):
    type: Literal[TaskType.SIMULATE]
    payload: SimulatePayload
    priority: int = Field(default=0, ge=0, le=9)


class RepositoryTaskSubmit(_Request):
    type: Literal[TaskType.INITIALIZE_REPOSITORY]
    payload: RepositoryPayload
    priority: int = Field(default=0, ge=0, le=9)


class ImpactTaskSubmit(_Request):
    type: Literal[TaskType.INITIALIZE_IMPACT_ANALYSIS]
    payload: ImpactPayload
    priority: int = Field(default=0, ge=0, le=9)


_SUBMIT_BY_TYPE: TypeAdapter[SimulateTaskSubmit | RepositoryTaskSubmit | ImpactTaskSubmit] = TypeAdapter(
    Annotated[SimulateTaskSubmit | RepositoryTaskSubmit | ImpactTaskSubmit, Field(discriminator="type")]
)


class TaskSubmit(_Request):
    """Validated in two steps, so an unknown type and a bad payload get distinct codes: the envelope
    here (a 422 VALIDATION_ERROR), then the payload by its type's model in `service.payloads` (a 422
    INVALID_PAYLOAD, with the operator's settings as context). Published as what both steps accept:
    a union discriminated by `type`, one payload schema per task type, from those same models."""

    type: TaskType
    payload: Annotated[dict[str, Any], AfterValidator(bounded_json(ACCEPTED_JSON))]
    priority: int = Field(default=0, ge=0, le=9)

    _json_integer = field_validator("priority", mode="before")(json_integer)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: cs.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(_SUBMIT_BY_TYPE.core_schema)


class TaskAccepted(_Wire):
    task_id: uuid.UUID
    status: Status


class Task(_Wire):
    """`result` and `error` are what is stored, unless that cannot be serialized: then a marker
    `{"unreadable": true, "reason"}` stands in (see `readable_json`), so reading never fails."""

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
    trace_id: str = Field(description="the task's trace id (32 hex digits), on every log line of its job")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Task:
        fields = {name: row[name] for name in cls.model_fields}
        fields["result"] = readable_json(fields["result"])
        fields["error"] = _readable_error(fields["error"])
        return cls.model_validate(fields)


def _readable_error(error: Any) -> dict[str, Any] | None:
    readable = readable_json(error)
    if readable is None or isinstance(readable, dict):
        return readable
    return {"unreadable": True, "reason": "the stored error is not a JSON object"}


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
    payload: EventJson = None


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
    """/health and /ready: `status`, what was checked, and when (as the worker's probes answer)."""

    status: str
    checks: dict[str, str] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
