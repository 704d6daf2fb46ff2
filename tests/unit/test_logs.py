"""The last line of defence of the JSON log lines: what they mask whatever a caller wrote."""

from __future__ import annotations

import json
import logging

import pytest

from service.logs import JsonFormatter, redact

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
