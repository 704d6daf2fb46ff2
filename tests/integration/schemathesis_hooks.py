"""Schemathesis hooks of `test_openapi_schemathesis`, loaded by the CLI through SCHEMATHESIS_HOOKS.

Valid `simulate` jobs are the API's to accept, and the workers' to run: a fuzzer drawing
`outcome: crash` or an hour of `durationMs` would kill the session's workers, or keep them busy long
after the run. So a valid simulate payload is made short and harmless before it is sent, staying
valid (the checks still see a positive case). Invalid (negative) cases are sent as drawn.
"""

from __future__ import annotations

from typing import Any

import schemathesis

HARMLESS_OUTCOMES = ("success", "retryable", "terminal")
MAX_DURATION_MS = 50
MAX_STEPS = 5


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    body = case.body
    if isinstance(body, dict) and body.get("type") == "simulate" and isinstance(body.get("payload"), dict):
        tame_simulate(body["payload"])


def tame_simulate(payload: dict[str, Any]) -> None:
    """Within the schema still: a few short steps, an outcome that settles, no wait, no own timeout."""
    if isinstance(payload.get("durationMs"), int):
        payload["durationMs"] = min(payload["durationMs"], MAX_DURATION_MS)
    if isinstance(payload.get("steps"), int):
        payload["steps"] = min(payload["steps"], MAX_STEPS)
    if payload.get("outcome") not in (None, *HARMLESS_OUTCOMES):
        payload["outcome"] = "terminal"
    payload.pop("waitForEvent", None)
    payload.pop("timeoutMs", None)
