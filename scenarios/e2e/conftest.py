"""Fixtures of the e2e suite: a recording HTTP client on the API, the DSN, and process handles.

Every request through `api` lands in the test's history, and after every test the invariants
are checked over that history and the settled stores (`invariants`, autouse here).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness.client import RecordingTransport
from harness.history import History
from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack


@pytest.fixture(autouse=True)
def _clean(clean_state: StackEndpoints) -> StackEndpoints:
    return clean_state


@pytest.fixture(autouse=True)
def _invariants(_clean: StackEndpoints, invariants: None) -> None:
    """Checked after the state was cleaned for this test, so only this test's tasks are judged."""


@pytest.fixture
def api(endpoints: StackEndpoints, history: History) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {endpoints.api_token}"} if endpoints.api_token else {}
    transport = RecordingTransport(httpx.HTTPTransport(), history, process="api")
    with httpx.Client(base_url=endpoints.api_url, headers=headers, timeout=30, transport=transport) as client:
        yield client


@pytest.fixture
def dsn(endpoints: StackEndpoints) -> str:
    return endpoints.postgres_dsn


@pytest.fixture
def management_url(endpoints: StackEndpoints) -> str:
    return endpoints.management_url


@pytest.fixture
def local_stack(stack: StackProvider) -> LocalStack:
    """Process handles exist only on the embedded stack; against a target these tests do not apply."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs process handles of the embedded stack (not available with HARNESS_TARGET)")
    return stack


@pytest.fixture
def paused_workers(local_stack: LocalStack) -> Iterator[None]:
    """Every worker stopped with SIGSTOP, so a submitted task stays PENDING until the test ends."""
    workers = [service.process for service in local_stack.workers.values()]
    for process in workers:
        process.pause()
    try:
        yield
    finally:
        for process in workers:
            process.resume()
