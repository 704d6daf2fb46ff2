"""`/openapi.json` as the API behaves: what FastAPI derives from the routes, plus what the
middleware and the door's code checks decide.

- Every error is `ErrorBody` (FastAPI's own `HTTPValidationError` never leaves the API), on each
  status a route answers: the routes list theirs (`errors(...)`); 401 (with the bearer scheme) and
  413 are added here, because `BearerAuth` and `BodyLimit` guard every route alike.
- The bearer scheme is always declared; operations require it only when `API_TOKENS` is set, and
  the paths `BearerAuth` leaves open never do.
- Rules the payload models check in code are published as patterns: a repoUrl git may be given, a
  safe ref, and text PostgreSQL can store (no U+0000) wherever a payload holds a string. The
  patterns accept only what the validators accept (a test generates from them to prove it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.api.auth import EXEMPT_PATHS
from service.api.schemas import NUL_FREE, STORABLE_JSON_REF, ErrorBody
from service.config import Settings
from service.payloads import PAYLOAD_MODELS, WaitForEvent

BEARER = "bearerAuth"

_ERROR_DESCRIPTIONS = {
    401: "a valid bearer token is required",
    404: "no such task",
    409: "a conflict with the task's state or with an earlier request",
    413: "the request body is over the limit",
    422: "the request is not valid",
    429: "too many requests of this kind at once",
    503: "a backing service did not answer; retry later",
}

# Printable ASCII except `#` (a fragment), `;` (path parameters) and `\`; the second also without `?`.
_URL_CHAR = r'[!"$-:<-\[\]-~]'
_URL_CHAR_NO_QUERY = r'[!"$-:<->@-\[\]-~]'
_URL_CHAR_NO_QUERY_OR_DASH = r'[!"$-,.-:<->@-\[\]-~]'
_HOST = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_USER = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"
_NETWORK_URL = rf"(?:https|ssh)://(?:{_USER}@)?{_HOST}(?::[0-9]{{1,4}})?/{_URL_CHAR_NO_QUERY}{_URL_CHAR}*"
_SCP_LIKE_URL = rf"{_USER}@{_HOST}:{_URL_CHAR_NO_QUERY_OR_DASH}{_URL_CHAR_NO_QUERY}*"
_LOCAL_REPOSITORY = r"(?:file://)?/[^\x00-\x20\x7f#]*"


def repo_url_pattern(*, allow_local: bool) -> str:
    """A repoUrl `validate_repo_url` accepts: https, ssh, scp-like, and local paths where allowed."""
    forms = [_NETWORK_URL, _SCP_LIKE_URL] + ([_LOCAL_REPOSITORY] if allow_local else [])
    return "^(?:" + "|".join(forms) + ")$"


REF_PATTERN = (
    r"^(?!@$)(?!.*(?:\.\.|//|@\{|/\.))(?!.*(?:\.lock|/|\.)$)"
    r"[^\-/.\x00-\x20\x7f~^:?*\[\\][^\x00-\x20\x7f~^:?*\[\\]*$"
)
"""A ref `validate_ref` accepts (`git check-ref-format`, and no leading '-')."""

STORABLE_JSON: dict[str, Any] = {
    "description": "any JSON value whose strings and keys hold no U+0000, nested at most 32 levels",
    "anyOf": [
        {"type": "null"}, {"type": "boolean"}, {"type": "number"}, {"type": "string", "pattern": NUL_FREE},
        {"type": "array", "items": {"$ref": STORABLE_JSON_REF}},
        {"type": "object", "propertyNames": {"pattern": NUL_FREE},
         "additionalProperties": {"$ref": STORABLE_JSON_REF}},
    ],
}

TASK_EVENT: dict[str, Any] = {
    "description": "one Server-Sent Event: `status` or `progress`, with the task as JSON data",
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": "#/components/schemas/Task"}},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
"""The schema of each event of `GET /tasks/{taskId}/stream` (OpenAPI 3.1 reads `schema` per event)."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route decorator: each status a route answers with the error model."""
    return {status: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customize it


def build_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["StorableJson"] = STORABLE_JSON
    _describe_payloads(schemas, allow_local=settings.allow_local_repos)
    components["securitySchemes"] = {BEARER: {
        "type": "http", "scheme": "bearer",
        "description": "one of API_TOKENS; when it is set, every route but the probes and the docs needs it",
    }}
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operation in _operations(schema):
        if "requestBody" in operation:
            operation["responses"].setdefault("413", _error_response(413, error_ref))
        if settings.api_tokens and path not in EXEMPT_PATHS:
            operation["security"] = [{BEARER: []}]
            operation["responses"]["401"] = _error_response(401, error_ref) | {
                "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
            }
        elif settings.api_tokens:
            operation["security"] = []
    return schema


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            yield path, operation


def _error_response(status: int, error_ref: dict[str, str]) -> dict[str, Any]:
    content = {"application/json": {"schema": error_ref}}
    return {"description": _ERROR_DESCRIPTIONS[status], "content": content}


def _describe_payloads(schemas: dict[str, Any], *, allow_local: bool) -> None:
    """Every string of a payload is storable text (`bounded_json` checks them all at the door)."""
    models: list[type[BaseModel]] = [*PAYLOAD_MODELS.values(), WaitForEvent]
    for model in models:
        component = schemas.get(model.__name__)
        if component is None:
            continue
        for field in component.get("properties", {}).values():
            for string in _strings(field):
                string.setdefault("pattern", NUL_FREE)
    repository = schemas["RepositoryPayload"]["properties"]
    _set_pattern(repository["repoUrl"], repo_url_pattern(allow_local=allow_local))
    _set_pattern(repository["ref"], REF_PATTERN)


def _strings(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if schema.get("type") == "string":
        yield schema
    for branch in schema.get("anyOf", ()):
        yield from _strings(branch)
    if isinstance(schema.get("items"), dict):
        yield from _strings(schema["items"])


def _set_pattern(field: dict[str, Any], pattern: str) -> None:
    for string in _strings(field):
        string["pattern"] = pattern
