"""JSON log lines that join the harness's history by taskId; secrets never reach them.

Only entry points call `configure_logging`. Records carry `taskId`, `type` and `step` through
`extra=`; payload contents are never logged. On the way out, as a last line of defence behind
the callers' own care (`service.repo_url.log_form`), credentials and fragments of URLs, file://
paths and bearer tokens are masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")
_FRAGMENT_IN_URL = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s#'\"]*)#[^\s'\"]+")
_FILE_URL = re.compile(r"(?i)\bfile://[^\s'\"]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_FIELDS = (
    "taskId",
    "type",
    "step",
    "durationMs",
    "attempt",
    "messageId",
    "workerId",
    "status",
    "error",
    "applied",
    "count",
    "queue",
)


def redact(text: str) -> str:
    """Masks user:password@ and #fragments in URLs, the paths of file:// URLs, and bearer tokens."""
    text = _CREDENTIALS_IN_URL.sub(lambda m: f"{m.group('scheme')}***@", text)
    text = _FRAGMENT_IN_URL.sub(lambda m: f"{m.group('url')}#***", text)
    text = _FILE_URL.sub("file://***", text)
    return _BEARER.sub(r"\1***", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "process": self._process,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str, *, process: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiormq", "aio_pika", "uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
