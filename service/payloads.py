"""Payload schemas per task type: the API validates at submit (422), the worker again on receipt.

And the bounds of every free-form JSON value: what the API accepts (`ACCEPTED_JSON`, `EVENT_JSON`,
checked at the door) and what a reader can always serialize (`READABLE_JSON`, applied to what is
stored). PostgreSQL's jsonb refuses NaN and Infinity, and pydantic refuses to serialize a value
nested about 250 levels deep, so neither may get past the door nor break a read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from service.models import TaskType
from service.repo_url import redact_url, validate_ref, validate_repo_url

_ALLOW_LOCAL_REPOS = "allow_local_repos"


def json_integer(value: Any) -> Any:
    """A before-validator of an integer field of a JSON body. JSON has one number type, so 3 and 3.0
    are the same integer (as JSON Schema's `integer` says); "3" and true are not numbers, though
    pydantic's lax mode would take them. None passes, for an optional field to refuse or accept."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError("must be an integer")
    return value


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_max_length=4096)

    def stored(self) -> dict[str, Any]:
        """The payload as `tasks.payload` and job messages keep it: the fields sent, by their wire names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class WaitForEvent(_Payload):
    type: str = Field(min_length=1, max_length=200)
    key: str = Field(min_length=1, max_length=500)


class SimulatePayload(_Payload):
    """A job whose behaviour the test chooses; `failAttempts` bounds how many attempts misbehave."""

    duration_ms: int = Field(default=0, ge=0, le=3_600_000, alias="durationMs")
    steps: int = Field(default=1, ge=1, le=1000)
    outcome: Literal["success", "retryable", "terminal", "crash", "hang"] = "success"
    fail_attempts: int | None = Field(default=None, ge=0, le=1000, alias="failAttempts")
    wait_for_event: WaitForEvent | None = Field(default=None, alias="waitForEvent")
    timeout_ms: int | None = Field(default=None, ge=100, le=86_400_000, alias="timeoutMs")

    _json_integers = field_validator("duration_ms", "steps", "fail_attempts", "timeout_ms", mode="before")(
        json_integer
    )


class RepositoryPayload(_Payload):
    """`stored()` keeps `repoUrl` with its credentials redacted: a secret is never written anywhere.

    The worker then clones the redacted URL without the `***` placeholder (see
    `service.repo_url.clone_url`), so a private https repository authenticates through the
    worker's own git credential helper (`GIT_CREDENTIAL_HELPER`), and ssh through its agent.
    """

    repo_url: str = Field(min_length=1, max_length=2048, alias="repoUrl")
    ref: str | None = Field(default=None, min_length=1, max_length=255)

    @field_validator("repo_url")
    @classmethod
    def _safe_url(cls, value: str, info: ValidationInfo) -> str:
        allow_local = bool((info.context or {}).get(_ALLOW_LOCAL_REPOS, False))
        return validate_repo_url(value, allow_local=allow_local)

    @field_validator("ref")
    @classmethod
    def _safe_ref(cls, value: str | None) -> str | None:
        return None if value is None else validate_ref(value)

    def stored(self) -> dict[str, Any]:
        return {**super().stored(), "repoUrl": redact_url(self.repo_url)}


class ImpactPayload(_Payload):
    repository_task_id: str = Field(
        alias="repositoryTaskId",
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    )
    changed_files: list[str] = Field(alias="changedFiles", min_length=1, max_length=10_000)


PAYLOAD_MODELS: dict[TaskType, type[_Payload]] = {
    TaskType.SIMULATE: SimulatePayload,
    TaskType.INITIALIZE_REPOSITORY: RepositoryPayload,
    TaskType.INITIALIZE_IMPACT_ANALYSIS: ImpactPayload,
}


def parse_payload(task_type: TaskType, payload: Any, *, allow_local_repos: bool = False) -> _Payload:
    """Raises pydantic's ValidationError (and ValueError) on a bad payload.

    `allow_local_repos` (`Settings.allow_local_repos`) lets a repoUrl name a local repository.
    """
    context = {_ALLOW_LOCAL_REPOS: allow_local_repos}
    return PAYLOAD_MODELS[task_type].model_validate(payload, context=context)


@dataclass(frozen=True)
class JsonBounds:
    """`max_depth` counts nested arrays and objects (a scalar is 0); `max_items` counts values and
    keys; `max_bytes` bounds the compact UTF-8 encoding."""

    max_depth: int
    max_items: int | None = None
    max_bytes: int | None = None


ACCEPTED_JSON = JsonBounds(max_depth=32, max_items=50_000)
"""A task payload; its size in bytes is bounded by the request body limit."""
EVENT_JSON = JsonBounds(max_depth=32, max_items=10_000, max_bytes=65_536)
"""An event payload: copied into every task it resumes, and by a simulate job into its result."""
READABLE_JSON = JsonBounds(max_depth=128)
"""What a read serializes; far enough below pydantic's limit to leave room for the envelope."""

_Walk = list[tuple[Any, int]]


def json_problem(value: Any, bounds: JsonBounds) -> str | None:
    """Why `value` is not a JSON value within `bounds`, or None. Iterative: depth cannot exhaust the stack."""
    pending: _Walk = [(value, 0)]
    items = 0
    while pending:
        item, depth = pending.pop()
        items += 1
        if bounds.max_items is not None and items > bounds.max_items:
            return f"JSON value has more than {bounds.max_items} items"
        if isinstance(item, dict | list):
            problem = _container_problem(item, depth, bounds, pending)
        else:
            problem = _scalar_problem(item)
        if problem is not None:
            return problem
    if bounds.max_bytes is not None and _encoded_size(value) > bounds.max_bytes:
        return f"JSON value is over {bounds.max_bytes} bytes"
    return None


def _container_problem(
    item: dict[Any, Any] | list[Any], depth: int, bounds: JsonBounds, pending: _Walk
) -> str | None:
    if depth >= bounds.max_depth:
        return f"JSON value is nested deeper than {bounds.max_depth} levels"
    if isinstance(item, list):
        pending.extend((child, depth + 1) for child in item)
        return None
    for key, child in item.items():
        if not isinstance(key, str):
            return "JSON object keys must be text"
        pending.append((key, depth + 1))
        pending.append((child, depth + 1))
    return None


def _scalar_problem(item: Any) -> str | None:
    if isinstance(item, str):
        return text_problem(item)
    if isinstance(item, float) and not math.isfinite(item):
        return "NaN and Infinity are not JSON numbers"
    if item is None or isinstance(item, bool | int | float):
        return None
    return f"a {type(item).__name__} is not a JSON value"


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store `text` (U+0000, lone surrogates), or None."""
    if "\x00" in text:
        return "text must not contain U+0000 (NUL)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (no lone surrogates)"
    return None


def _encoded_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def bounded_json(bounds: JsonBounds) -> Callable[[Any], Any]:
    """A pydantic AfterValidator: the value unchanged, or ValueError (a 422) naming the problem."""

    def check(value: Any) -> Any:
        problem = json_problem(value, bounds)
        if problem is not None:
            raise ValueError(problem)
        return value

    return check


def storable_text(value: str) -> str:
    """A pydantic AfterValidator for one text field: PostgreSQL must be able to store it."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def readable_json(value: Any) -> Any:
    """A stored value as a reader can always serialize it: unchanged, or, when it is out of
    `READABLE_JSON`, `{"unreadable": true, "reason": ...}` in its place, so a read never fails."""
    problem = json_problem(value, READABLE_JSON)
    return value if problem is None else {"unreadable": True, "reason": problem}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name}: NaN, Infinity and -Infinity are not JSON numbers")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is out of range for a JSON number")
    return number


def parse_json(raw: bytes | str) -> Any:
    """Standard JSON only (RFC 8259): Python's parser also takes NaN, Infinity and 1e400 (as inf),
    which PostgreSQL then refuses. Raises json.JSONDecodeError, which FastAPI answers with a 422."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except ValueError as error:
        raise json.JSONDecodeError(str(error), "", 0) from None


__all__ = [
    "ACCEPTED_JSON",
    "EVENT_JSON",
    "READABLE_JSON",
    "JsonBounds",
    "json_integer",
    "bounded_json",
    "json_problem",
    "parse_json",
    "readable_json",
    "storable_text",
    "text_problem",
    "PAYLOAD_MODELS",
    "ValidationError",
    "parse_payload",
    "SimulatePayload",
    "RepositoryPayload",
    "ImpactPayload",
    "WaitForEvent",
]
