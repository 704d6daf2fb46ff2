"""Bad input gets a 4xx with the contract's error shape, and writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scenarios.e2e.helpers import sql

pytestmark = pytest.mark.e2e


def _assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "details" in error


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"type": "compile_everything", "payload": {}}, 422),
        ({"type": "simulate", "payload": {"outcome": "explode"}}, 422),
        ({"type": "simulate", "payload": {"durationMs": -5}}, 422),
        ({"type": "simulate", "payload": {"steps": "many"}}, 422),
        ({"type": "simulate"}, 422),
        ({"payload": {}}, 422),
        ({"type": "initialize_repository", "payload": {"repoUrl": "ext::sh -c touch% /tmp/pwned"}}, 422),
        ({"type": "initialize_repository", "payload": {"repoUrl": "-uhelp"}}, 422),
        (
            {
                "type": "initialize_impact_analysis",
                "payload": {"repositoryTaskId": "nope", "changedFiles": []},
            },
            422,
        ),
        ([1, 2, 3], 422),
    ],
)
def test_bad_submissions_are_refused_and_write_nothing(
    api: httpx.Client, dsn: str, body: Any, status: int
) -> None:
    before = sql(dsn, "SELECT (SELECT count(*) FROM tasks) AS t, (SELECT count(*) FROM outbox) AS o")[0]

    response = api.post("/tasks", json=body)

    _assert_error(response, status)
    after = sql(dsn, "SELECT (SELECT count(*) FROM tasks) AS t, (SELECT count(*) FROM outbox) AS o")[0]
    assert dict(after) == dict(before)


def test_malformed_json_is_422(api: httpx.Client) -> None:
    response = api.post(
        "/tasks", content=b'{"type": "simulate", ', headers={"content-type": "application/json"}
    )

    _assert_error(response, 422)


def test_oversized_body_is_413(api: httpx.Client) -> None:
    response = api.post("/tasks", json={"type": "simulate", "payload": {"pad": "x" * 2_000_000}})

    _assert_error(response, 413)


def test_unknown_task_is_404(api: httpx.Client) -> None:
    _assert_error(api.get("/tasks/00000000-0000-0000-0000-000000000001"), 404)
    _assert_error(api.get("/tasks/not-a-uuid"), 404)
    _assert_error(api.post("/tasks/00000000-0000-0000-0000-000000000001/cancel"), 404)


def test_bad_list_filters_are_422(api: httpx.Client) -> None:
    _assert_error(api.get("/tasks", params={"status": "SLEEPING"}), 422)
    _assert_error(api.get("/tasks", params={"limit": 0}), 422)
    _assert_error(api.get("/tasks", params={"cursor": "!!!"}), 422)
