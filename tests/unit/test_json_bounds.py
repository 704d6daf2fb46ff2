"""The bounds of every JSON value the API accepts, reads back, and the errors a bad one gets (issue 9)."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from service.api.cursor import decode_cursor
from service.api.errors import ApiError, install_error_handlers
from service.api.schemas import ExternalEvent, Task, TaskSubmit
from service.payloads import (
    ACCEPTED_JSON,
    EVENT_JSON,
    READABLE_JSON,
    json_problem,
    parse_json,
    readable_json,
)

pytestmark = pytest.mark.unit


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (nested(ACCEPTED_JSON.max_depth), None),
        (nested(ACCEPTED_JSON.max_depth + 1), "nested deeper than"),
        ({"a": {"b": nested(ACCEPTED_JSON.max_depth - 2)}}, None),
        ({"a": {"b": nested(ACCEPTED_JSON.max_depth - 1)}}, "nested deeper than"),
        (nested(100_000), "nested deeper than"),
        (list(range(ACCEPTED_JSON.max_items or 0)), "more than"),
        ([math.nan], "NaN and Infinity"),
        ({"x": [1.0, math.inf]}, "NaN and Infinity"),
        ([-math.inf], "NaN and Infinity"),
        (["a\x00b"], "U+0000"),
        ({"\ud800": 1}, "lone surrogates"),
        ({1: 2}, "object keys must be text"),
        ({"set": {1}}, "not a JSON value"),
        ([10**300, -0.0, 1e308, True, None, "é"], None),
    ],
)
def test_json_problem(value: Any, problem: str | None) -> None:
    found = json_problem(value, ACCEPTED_JSON)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_event_payload_is_bounded_in_bytes() -> None:
    assert EVENT_JSON.max_bytes is not None
    assert json_problem("x" * (EVENT_JSON.max_bytes - 2), EVENT_JSON) is None
    found = json_problem("x" * EVENT_JSON.max_bytes, EVENT_JSON)
    assert found is not None
    assert "bytes" in found


def test_what_the_door_accepts_a_reader_can_always_serialize() -> None:
    """An event payload at the door's limit, copied into a simulate result, stays readable."""
    assert EVENT_JSON.max_depth + 4 < READABLE_JSON.max_depth
    event = {"type": "t", "key": "k", "payload": nested(EVENT_JSON.max_depth)}
    result = {"outcome": "success", "event": event}
    assert readable_json(result) is result


def test_reading_replaces_what_cannot_be_serialized() -> None:
    unreadable = readable_json({"payload": nested(300)})
    assert unreadable["unreadable"] is True
    assert "nested deeper than" in unreadable["reason"]
    assert readable_json(None) is None


def _row(**columns: Any) -> dict[str, Any]:
    from datetime import UTC, datetime
    from uuid import uuid4

    now = datetime.now(UTC)
    return {"task_id": uuid4(), "type": "simulate", "status": "COMPLETED", "state": None, "progress": 100,
            "priority": 0, "retry_count": 0, "max_retries": 3, "error": None, "result": None,
            "trace_id": "0" * 32,
            "created_at": now, "updated_at": now, "started_at": now, "completed_at": now} | columns


def test_a_task_with_anything_stored_serializes() -> None:
    row = _row(result={"event": nested(1000)}, error={"code": "X", "message": "m", "more": nested(1000)})
    task = Task.from_row(row)  # type: ignore[arg-type]
    body = json.loads(task.model_dump_json(by_alias=True))
    assert body["result"]["unreadable"] is True
    assert body["error"]["unreadable"] is True
    fine = Task.from_row(_row(result={"a": nested(50)}))  # type: ignore[arg-type]
    assert json.loads(fine.model_dump_json())["result"] == {"a": nested(50)}


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400", "-1E+999", "[1, NaN]"])
def test_parse_json_refuses_non_standard_numbers(text: str) -> None:
    with pytest.raises(json.JSONDecodeError, match="NaN, Infinity|out of range"):
        parse_json(text.encode())


def test_parse_json_keeps_standard_numbers() -> None:
    assert parse_json(b'{"a": [1e308, -0.0, 12345678901234567890, 1.5e-320]}') == {
        "a": [1e308, -0.0, 12345678901234567890, 1.5e-320]
    }


def test_schemas_refuse_deep_and_non_finite_values() -> None:
    with pytest.raises(ValidationError):
        ExternalEvent.model_validate({"type": "t", "key": "k", "payload": nested(300)})
    with pytest.raises(ValidationError):
        ExternalEvent.model_validate({"type": "t", "key": "k", "payload": {"n": math.nan}})
    with pytest.raises(ValidationError):
        TaskSubmit.model_validate({"type": "simulate", "payload": {"x": nested(300)}})
    event = ExternalEvent.model_validate({"type": "t", "key": "k", "payload": nested(20)})
    assert event.payload == nested(20)


def _cursor(created: str) -> str:
    raw = json.dumps([created, "00000000-0000-0000-0000-000000000000"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "created", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00"]
)
def test_cursor_outside_what_a_timestamp_holds_is_422(created: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_cursor(_cursor(created))
    assert (caught.value.status, caught.value.code) == (422, "INVALID_CURSOR")


def test_cursor_is_normalised_to_utc() -> None:
    when, _ = decode_cursor(_cursor("9999-12-31T18:59:59-05:00"))
    assert when.utcoffset() is not None
    assert when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def _app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (asyncpg.exceptions.DataError("invalid input for query argument $3"), 422),
        (asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax for type json"), 422),
        (asyncpg.exceptions.NumericValueOutOfRangeError("out of range"), 422),
        (asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted to text"), 422),
        (asyncpg.exceptions.ProgramLimitExceededError("total size of jsonb array elements exceeds"), 422),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), 503),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), 503),
        (OSError("connection refused"), 503),
    ],
)
async def test_driver_errors_from_client_values_are_422_and_only_unavailability_is_503(
    error: Exception, status: int
) -> None:
    transport = httpx.ASGITransport(app=_app_raising(error))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")
    assert response.status_code == status
    body = response.json()["error"]
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == ("VALIDATION_ERROR" if status == 422 else "UNAVAILABLE")
    assert "$3" not in response.text  # the driver's words, which may quote the value, stay in the log
    assert "syntax" not in response.text


class _DeadLetter:
    def __init__(self, body: bytes) -> None:
        self.body = body


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"taskId": ' + b"[" * 100_000, b"not json", b'{"taskId": NaN}', b"\xff"]
)
def test_an_unreadable_dead_letter_names_no_task(body: bytes) -> None:
    """A hostile message in the DLQ must not make `POST /dlq/replay` fail for every later caller."""
    from service.api.routes.dlq import _task_id_of

    assert _task_id_of(_DeadLetter(body)) is None  # type: ignore[arg-type]
