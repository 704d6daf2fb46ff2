"""Prometheus metrics of the API, in a registry per app so several apps can live in one process (tests).

Every label comes from a fixed set, never from raw input, because the middleware runs before
auth and anyone can send anything: requests are labelled by route template (`/tasks/{task_id}`),
unknown paths share `unmatched`, and a method outside the standard ones is `OTHER`. The number of
series is therefore bounded whatever clients send.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "OTHER"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ast_api_requests_total", "HTTP requests by route template, method and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "ast_api_request_duration_seconds", "HTTP request duration by route template",
            ["method", "route"], registry=self.registry,
        )
        self.tasks_submitted = Counter(
            "ast_api_tasks_submitted_total", "Tasks accepted (new, not idempotent replays) by type",
            ["type"], registry=self.registry,
        )
        self._submitted: dict[str, Any] = {}

    def task_submitted(self, task_type: str) -> None:
        """Counts one accepted task of `task_type` (one of the known types: a bounded set of children)."""
        child = self._submitted.get(task_type)
        if child is None:
            child = self._submitted[task_type] = self.tasks_submitted.labels(task_type)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """Pure ASGI middleware; reads the matched route from the scope after the app has routed it.

    The labelled children are kept per (method, route, status): `labels()` checks, converts and
    locks on every call, for series that are bounded and known after their first request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = perf_counter() - started
            route = scope.get("route")
            route_label = UNMATCHED_ROUTE if route is None else str(getattr(route, "path", UNMATCHED_ROUTE))
            method = method_label(scope.get("method"))
            self._counter(method, route_label, status).inc()
            self._histogram(method, route_label).observe(elapsed)

    def _counter(self, method: str, route: str, status: int) -> Any:
        key = (method, route, status)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self.metrics.requests.labels(method, route, str(status))
        return child

    def _histogram(self, method: str, route: str) -> Any:
        key = (method, route)
        child = self._timed.get(key)
        if child is None:
            child = self._timed[key] = self.metrics.latency.labels(method, route)
        return child


def method_label(method: object) -> str:
    """The request's method if standard, else `OTHER` (`curl -X M0001X` must not add a series)."""
    return method if isinstance(method, str) and method in KNOWN_METHODS else OTHER_METHOD
