"""JSON log lines (structlog) that join the harness's history by taskId; secrets never reach them.

Only entry points call `configure_logging`. Modules log through the standard `logging` API; the
lines are rendered by structlog's `ProcessorFormatter`, which adds what `bind_job` and `job_step`
bound in a context variable (`taskId`, `traceId`, `type`, `attempt`, `step`), so every line a job
writes carries them without each call passing `extra=`. A call's own `extra=` still wins.
Payload contents are never logged. On the way out, as a last line of defence behind the callers'
own care (`service.repo_url.log_form`), credentials and fragments of URLs, file:// paths and
bearer tokens are masked in every field, the message and the traceback alike.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

import structlog
from structlog.typing import Processor, WrappedLogger

_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")
_FRAGMENT_IN_URL = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s#'\"]*)#[^\s'\"]+")
_FILE_URL = re.compile(r"(?i)\bfile://[^\s'\"]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_FIELDS = (
    "taskId",
    "traceId",
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
EventDict = MutableMapping[str, Any]
_NOTHING_BOUND: Mapping[str, Any] = MappingProxyType({})
# One context variable holding every bound field: binding is one set() and one reset() (about a
# microsecond), where structlog's bound_contextvars copies the whole context (tens of microseconds,
# paid per job and per step on the worker's hot path).
_bound: ContextVar[Mapping[str, Any]] = ContextVar("ast_log_fields", default=_NOTHING_BOUND)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Every line logged inside (this task, and the threads it starts through asyncio.to_thread)
    carries `fields`; an inner binding adds to the outer one."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def _merge_bound(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.update(_bound.get())
    return event


def redact(text: str) -> str:
    """Masks user:password@ and #fragments in URLs, the paths of file:// URLs, and bearer tokens."""
    if "://" not in text and "bearer" not in text.lower():
        return text  # none of the patterns can match: most lines, at a fraction of their cost
    text = _CREDENTIALS_IN_URL.sub(lambda m: f"{m.group('scheme')}***@", text)
    text = _FRAGMENT_IN_URL.sub(lambda m: f"{m.group('url')}#***", text)
    text = _FILE_URL.sub("file://***", text)
    return _BEARER.sub(r"\1***", text)


def _redact_values(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def _level_and_logger(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    record: logging.LogRecord | None = event.get("_record")
    if record is not None:
        event["level"] = record.levelname
        event["logger"] = record.name
    return event


def _process_name(process: str) -> Processor:
    def add(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event["process"] = process
        return event

    return add


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """One JSON object per record: ts, level, process, logger, msg, the bound and extra fields, exc."""

    def __init__(self, process: str) -> None:
        pre_chain: list[Processor] = [
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _level_and_logger,
            _process_name(process),
            _merge_bound,
            structlog.stdlib.ExtraAdder(allow=_FIELDS),
        ]
        super().__init__(
            foreign_pre_chain=pre_chain,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.EventRenamer("msg"),
                _rename("exception", "exc"),
                _redact_values,
                structlog.processors.JSONRenderer(default=str),
            ],
        )


def _rename(old: str, new: str) -> Processor:
    def rename(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        if old in event:
            event[new] = event.pop(old)
        return event

    return rename


@contextmanager
def bind_job(task_id: str, task_type: str, trace_id: str | None) -> Iterator[None]:
    """Every line logged inside (this task and the threads it starts) carries the job's ids."""
    fields: dict[str, Any] = {"taskId": task_id, "type": task_type}
    if trace_id:
        fields["traceId"] = trace_id
    with bound(**fields):
        yield


def configure_logging(level: str, *, process: str) -> None:
    # No line shows the caller's file and line, thread or pid (`process` is the service's name), so
    # none is looked up per record: the logging HOWTO's "Optimization" settings. structlog's
    # formatter copies each record once more, which paid for them twice.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiormq", "aio_pika", "uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
