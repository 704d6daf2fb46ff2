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
        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: `labels()` checks, converts and locks on every call, for
        series that are bounded (see above) and known after their first use."""
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def task_submitted(self, task_type: str) -> None:
        """Counts one accepted task of `task_type`."""
        self.child(self.tasks_submitted, task_type).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """Pure ASGI middleware; reads the matched route from the scope after the app has routed it."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

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
            route = str(getattr(scope.get("route"), "path", UNMATCHED_ROUTE))
            method = method_label(scope.get("method"))
            metrics = self.metrics
            metrics.child(metrics.requests, method, route, str(status)).inc()
            metrics.child(metrics.latency, method, route).observe(elapsed)


def method_label(method: object) -> str:
    """The request's method if standard, else `OTHER` (`curl -X M0001X` must not add a series)."""
    return method if isinstance(method, str) and method in KNOWN_METHODS else OTHER_METHOD
