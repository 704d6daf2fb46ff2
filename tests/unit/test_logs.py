"""The last line of defence of the JSON log lines: what they mask whatever a caller wrote."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import pytest

from service.logs import JsonFormatter, bind_job, redact
from service.tracing import job_step

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cloning https://user:pw@host/x.git", "cloning https://***@host/x.git"),
        ("cloning https://host/x.git#tok3n-SECRET at main", "cloning https://host/x.git#*** at main"),
        ("fatal: 'file:///home/alice/repo' is no repository", "fatal: 'file://***' is no repository"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("https://host/x.git and /tmp/plain", "https://host/x.git and /tmp/plain"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_a_record_is_masked_in_its_message_and_its_fields() -> None:
    record = logging.LogRecord(
        "service.test", logging.WARNING, __file__, 1, "failed: %s", ("file:///srv/private",), None
    )
    record.error = "https://h/x.git#tok3n-SECRET"
    line = JsonFormatter("worker").format(record)
    assert "private" not in line
    assert "tok3n-SECRET" not in line
    assert json.loads(line)["msg"] == "failed: file://***"


def render(emit: Callable[[], None]) -> list[dict[str, object]]:
    """The JSON lines `emit()` writes, through the root handler the entry points configure."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("worker"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        emit()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_jobs_ids_are_on_every_line_it_writes_and_a_calls_extra_wins() -> None:
    logger = logging.getLogger("service.test.bound")

    def emit() -> None:
        with bind_job("t-1", "simulate", "0af7651916cd43dd8448eb211c80319c"):
            logger.info("started")
            with job_step("clone"):
                logger.info("inside")
            logger.info("explicit", extra={"step": "finish", "durationMs": 12.5})
        logger.info("after")

    lines = render(emit)
    assert [line.get("taskId") for line in lines] == ["t-1"] * 4 + [None]
    assert {line.get("traceId") for line in lines[:4]} == {"0af7651916cd43dd8448eb211c80319c"}
    assert [line.get("step") for line in lines] == [None, "clone", "clone", "finish", None]
    step_done = lines[2]
    assert step_done["msg"] == "step clone done"
    assert isinstance(step_done["durationMs"], float)
    assert lines[3]["durationMs"] == 12.5


def test_every_path_into_a_line_is_masked() -> None:
    """The message, its arguments, an extra field, a bound context variable and a traceback."""
    logger = logging.getLogger("service.test.masked")

    def emit() -> None:
        with bind_job("t-2", "initialize_repository https://u:pw@h/r.git", None):
            logger.info("clone %s", "https://alice:s3cret@h/r.git", extra={"error": "Bearer tok3n"})
            try:
                raise RuntimeError("fatal: file:///home/alice/private")
            except RuntimeError:
                logger.exception("failed at https://h/r.git#frag-SECRET")

    text = json.dumps(render(emit))
    for secret in ("s3cret", "pw@", "tok3n", "/home/alice", "frag-SECRET"):
        assert secret not in text
    assert "https://***@h/r.git" in text
    assert "file://***" in text
