"""Malformed requests get the documented refusal, in the contract's error shape, and write nothing.

The property, for every request the strategies in `malformed.py` build: the answer is one of the
statuses that request must get (a 4xx: 422 for bad input, 413 over the body limit, 404 for an id
that names no task), never a 2xx and never a 5xx; the body is
`{"error": {"code": str, "message": str, "details": ...}}`; and the rows of `tasks`,
`task_events` and `outbox` are exactly as many as before. Each test starts from a clean state, so
nothing else writes while it runs. Every request is recorded in the test's history and the
invariants are checked after the test, as in every suite, so the verdicts join the run record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.client import RecordingTransport
from harness.history import History
from harness.stack.base import StackEndpoints
from harness.stack.readiness import run_sync
from scenarios.property.limits import MALFORMED_EXAMPLES
from scenarios.property.malformed import (
    TASK_ROUTES,
    Malformed,
    bad_header_submissions,
    malformed_events,
    malformed_list_queries,
    malformed_replays,
    malformed_submissions,
    odd_events,
    path_ids,
)
from scenarios.property.stats import ExampleCounter

pytestmark = [pytest.mark.property, pytest.mark.timeout(600)]

MALFORMED = settings(
    max_examples=MALFORMED_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
    ],
    report_multiple_bugs=False,
)
COUNTED_TABLES = ("tasks", "task_events", "outbox")


class RowCounts:
    """Row counts of the tables a request could write, from one connection kept for the test."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def read(self) -> dict[str, int]:
        async def count() -> dict[str, int]:
            conn = await asyncpg.connect(self._dsn, timeout=10)
            try:
                return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in COUNTED_TABLES}
            finally:
                await conn.close()

        return run_sync(count(), own_thread=True)


@pytest.fixture(autouse=True)
def _invariants(clean_state: StackEndpoints, invariants: None) -> None:
    """Checked after the state was cleaned for this test, so only this test's requests are judged."""


@pytest.fixture
def raw_api(clean_state: StackEndpoints, history: History) -> Iterator[httpx.Client]:
    """Raw httpx, not the typed client (these requests are not what it can send), on the recording
    transport, so every malformed request and its refusal land in the test's history."""
    headers = {"Authorization": f"Bearer {clean_state.api_token}"} if clean_state.api_token else {}
    transport = RecordingTransport(httpx.HTTPTransport(), history, process="malformed")
    with httpx.Client(
        base_url=clean_state.api_url, headers=headers, timeout=30, transport=transport
    ) as client:
        yield client


@pytest.fixture
def rows(clean_state: StackEndpoints) -> RowCounts:
    return RowCounts(clean_state.postgres_dsn)


def send(api: httpx.Client, request: Malformed) -> httpx.Response:
    return api.request(
        request.method, request.path, content=request.content, params=request.params, headers=request.headers
    )


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} is not JSON: {response.text[:300]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"no error object: {body!r}"
    assert isinstance(error.get("code"), str), f"no error code: {body!r}"
    assert error["code"], f"empty error code: {body!r}"
    assert isinstance(error.get("message"), str), f"no error message: {body!r}"
    assert "details" in error, f"no details: {body!r}"
    return error


def assert_refused(api: httpx.Client, rows: RowCounts, request: Malformed) -> dict[str, Any]:
    """Sends the request; it must get one of its statuses, the error shape, and write nothing."""
    before = rows.read()
    response = send(api, request)
    assert response.status_code in request.expect, (
        f"{request!r} got {response.status_code}: {response.text[:500]}"
    )
    error = assert_error_shape(response)
    assert rows.read() == before, f"{request!r} was refused but wrote rows"
    return error


@given(request=malformed_submissions())
@MALFORMED
def test_malformed_submissions_are_refused(
    raw_api: httpx.Client, rows: RowCounts, example_counter: ExampleCounter, request: Malformed
) -> None:
    example_counter.examples += 1
    assert_refused(raw_api, rows, request)


@given(request=bad_header_submissions())
@MALFORMED
def test_a_valid_body_with_bad_headers_is_refused(
    raw_api: httpx.Client, rows: RowCounts, example_counter: ExampleCounter, request: Malformed
) -> None:
    example_counter.examples += 1
    assert_refused(raw_api, rows, request)


@given(request=malformed_list_queries())
@MALFORMED
def test_malformed_list_queries_are_refused(
    raw_api: httpx.Client, rows: RowCounts, example_counter: ExampleCounter, request: Malformed
) -> None:
    example_counter.examples += 1
    assert_refused(raw_api, rows, request)


@given(request=malformed_events())
@MALFORMED
def test_malformed_events_are_refused(
    raw_api: httpx.Client, rows: RowCounts, example_counter: ExampleCounter, request: Malformed
) -> None:
    example_counter.examples += 1
    assert_refused(raw_api, rows, request)


@given(event=odd_events)
@MALFORMED
def test_any_well_formed_event_resumes_nothing_and_never_fails_the_server(
    raw_api: httpx.Client, rows: RowCounts, example_counter: ExampleCounter, event: dict[str, Any]
) -> None:
    """Unicode names of legal length are valid input: 202 `{"resumed": 0}` (nothing waits here),
    or 422 for text PostgreSQL cannot store (U+0000, lone surrogates); never a 5xx."""
    example_counter.examples += 1
    before = rows.read()
    content = json.dumps(event).encode()  # ASCII escapes, so lone surrogates survive the trip
    response = raw_api.post("/events", content=content, headers={"content-type": "application/json"})
    if response.status_code != 202:
        assert response.status_code == 422, f"{event!r} got {response.status_code}: {response.text[:500]}"
        assert_error_shape(response)
    else:
        assert response.json() == {"resumed": 0}
    assert rows.read() == before


@given(request=malformed_replays())
@MALFORMED
def test_malformed_replays_are_refused(
    raw_api: httpx.Client, rows: RowCounts, example_counter: ExampleCounter, request: Malformed
) -> None:
    example_counter.examples += 1
    assert_refused(raw_api, rows, request)


@given(route=st.sampled_from(TASK_ROUTES), task_id=path_ids | st.uuids().map(str))
@MALFORMED
def test_ids_that_name_no_task_are_404(
    raw_api: httpx.Client,
    rows: RowCounts,
    example_counter: ExampleCounter,
    route: tuple[str, str],
    task_id: str,
) -> None:
    """Any path id is one segment (quoted); a UUID or not, it names no task on a clean state.
    An id with a slash reaches no route at all: 404 or 405 from the router, in the same shape."""
    example_counter.examples += 1
    method, template = route
    path = template.format(id=quote(task_id, safe=""))
    expect = frozenset({404}) if "/" not in task_id else frozenset({404, 405})
    error = assert_refused(raw_api, rows, Malformed("unknown task id", method, path, expect=expect))
    if "/" not in task_id:
        assert error["code"] == "TASK_NOT_FOUND", error
