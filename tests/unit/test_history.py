"""The history recorder and the recording client, with no servers: httpx's MockTransport answers."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.client import ServiceClient
from harness.history import History, body_digest, load_history

pytestmark = pytest.mark.unit


def test_body_digest_ignores_key_order() -> None:
    assert body_digest({"a": 1, "b": [1, 2]}) == body_digest({"b": [1, 2], "a": 1})
    assert body_digest({"a": 1}) != body_digest({"a": 2})
    assert body_digest(None) is None


def test_invocations_and_completions_round_trip_through_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with History(path) as history:
        call = history.invoke(
            "c1", "submit", "POST", "/tasks", body={"type": "simulate"}, idempotency_key="k"
        )
        history.complete(call, "ok", status_code=202, task_id="t1", task_status="PENDING")
        history.invoke("c2", "get", "GET", "/tasks/t1")
    loaded = load_history(path)
    assert [op.type for op in loaded] == ["invoke", "ok", "invoke"]
    done = loaded.ops[1]
    assert (done.invoke_index, done.task_id, done.idempotency_key) == (0, "t1", "k")
    assert done.body_digest == body_digest({"type": "simulate"})
    assert [op.index for op in loaded.pending()] == [2]
    assert json.loads(path.read_text().splitlines()[1])["type"] == "ok"


def test_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with History(path) as history:
        history.invoke("c1", "get", "GET", "/tasks/x")
    with path.open("a") as f:
        f.write('{"index": 1, "type": "o')
    assert len(load_history(path)) == 1


def test_a_completion_must_be_ok_fail_or_info() -> None:
    history = History()
    call = history.invoke("c1", "get", "GET", "/x")
    with pytest.raises(ValueError, match="ok, fail or info"):
        history.complete(call, "invoke")


def test_indices_stay_unique_under_threads() -> None:
    history = History()

    def record() -> None:
        for _ in range(200):
            history.complete(history.invoke("t", "get", "GET", "/x"), "ok")

    threads = [threading.Thread(target=record) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [op.index for op in history] == list(range(3200))
    assert not history.pending()


def answer(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/tasks" and request.method == "POST":
        assert request.headers["Authorization"] == "Bearer s3cret"
        if json.loads(request.content)["type"] == "nope":
            return httpx.Response(422, json={"error": {"code": "VALIDATION", "message": "bad"}})
        return httpx.Response(202, json={"taskId": "t1", "status": "PENDING"})
    if request.url.path == "/queues":
        return httpx.Response(503, json={"error": {"code": "UNAVAILABLE", "message": "x"}})
    raise httpx.ConnectError("reset by peer", request=request)


def test_client_records_ok_fail_and_unknown_from_concurrent_calls() -> None:
    history = History()
    with (
        ServiceClient("http://api", history, token="s3cret", transport=httpx.MockTransport(answer)) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        calls = [
            pool.submit(client.submit, "simulate", {"steps": 1}, idempotency_key="k1"),
            pool.submit(client.submit, "nope", {}),
            pool.submit(client.queues),
            pool.submit(client.get, "t1"),
        ]
        results = [call.result() for call in calls]
    assert [r.outcome for r in results] == ["ok", "fail", "info", "info"]
    assert results[0].task_id == "t1"
    assert results[1].op.error == "VALIDATION"
    assert results[2].status_code == 503
    assert results[3].status_code is None
    assert results[3].op.error is not None
    assert "ConnectError" in results[3].op.error
    assert len(history) == 8
    assert not history.pending()
    index = results[0].op.invoke_index
    assert index is not None
    submit = history.ops[index]
    assert submit.idempotency_key == "k1"
    assert submit.body_digest == body_digest({"type": "simulate", "payload": {"steps": 1}})


def test_client_sends_the_priority_and_records_in_call_order() -> None:
    history = History()
    with ServiceClient(
        "http://api", history, token="s3cret", transport=httpx.MockTransport(answer)
    ) as client:
        assert client.submit("simulate", {"steps": 1}, priority=5).ok
        assert client.queues().outcome == "info"
    assert [op.type for op in history] == ["invoke", "ok", "invoke", "info"]
    sent = {"type": "simulate", "payload": {"steps": 1}, "priority": 5}
    assert history.ops[0].body_digest == body_digest(sent)


def test_any_string_a_test_sends_can_be_digested_and_recorded(tmp_path: Path) -> None:
    """A lone surrogate or NUL (what the malformed-request properties send) must not stop recording."""
    body = {"type": "t\ud800", "key": "\x00k", "payload": {"x": "\udfff"}}
    with History(tmp_path / "h.jsonl") as history:
        op = history.invoke("p", "event", "POST", "/events", body=body)
        history.complete(op, "fail", status_code=422)
    assert body_digest(body) == op.body_digest
    assert [o.type for o in load_history(tmp_path / "h.jsonl")] == ["invoke", "fail"]
