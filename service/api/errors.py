"""Every error leaves the API as `{"error": {"code", "message", "details"}}` with a fitting status.

Bad input is always a 4xx; a database or broker that does not answer is a 503 `UNAVAILABLE`, so a
client (and the harness) can tell "you sent something wrong" from "try again later". A value the
database refuses (SQLSTATE class 22, data exception, which asyncpg also raises when it cannot encode
an argument; class 54, a program limit) will be refused again on every retry: it is a 422, since in
the API such a value can only have come from the request. The door's checks should have caught it,
so it is logged as a warning, without the driver's message (which quotes the value).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aio_pika
import aiormq
import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import InfrastructureError

log = logging.getLogger("ast.api")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    503: "UNAVAILABLE",
}

REFUSED_VALUE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.ProgramLimitExceededError,
)

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    InfrastructureError,
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
)


class ApiError(Exception):
    """Raised by routes for a deliberate 4xx/5xx answer with a machine-readable code."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details), status_code=status, headers=dict(headers) if headers else None
    )


def task_not_found(task_id: object) -> ApiError:
    return ApiError(404, "TASK_NOT_FOUND", f"task {task_id} does not exist")


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Location, message and type of each problem; never the input, which may be a payload."""
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": _message(error),
         "type": str(error.get("type", ""))}
        for error in errors
    ]


def _message(error: Any) -> str:
    """pydantic's message; for a body that is not JSON, with the decoder's reason (never the text)."""
    message = str(error.get("msg", ""))
    reason = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and isinstance(reason, str):
        return f"{message}: {reason}"
    return message


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def _request_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    details = validation_details(exc.errors())
    return error_response(422, "VALIDATION_ERROR", "the request is not valid", details)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's only 400 is a body it cannot decode (e.g. not UTF-8): bad JSON, so a 422 like the rest."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        return error_response(422, "VALIDATION_ERROR", "the request body could not be parsed as JSON")
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else code.lower().replace("_", " ")
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _refused_value(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "the database refused a value of %s %s: %s (SQLSTATE %s)", request.method, request.url.path,
        type(exc).__name__, getattr(exc, "sqlstate", None), extra={"step": "request"},
    )
    return error_response(422, "VALIDATION_ERROR", "a value in the request cannot be stored or compared")


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "dependency unavailable during %s %s: %s", request.method, request.url.path, type(exc).__name__,
        extra={"step": "request"},
    )
    return error_response(503, "UNAVAILABLE", "a backing service did not answer; retry later")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error during %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, _unavailable)
    for error_type in REFUSED_VALUE_ERRORS:
        app.add_exception_handler(error_type, _refused_value)
    app.add_exception_handler(Exception, _unexpected)
