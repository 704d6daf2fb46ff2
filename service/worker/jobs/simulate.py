"""`simulate`: a job whose behaviour the test chooses, for drills and load runs.

The chosen outcome applies to the first `failAttempts` attempts (every attempt when absent); later
attempts succeed, so "fails twice then succeeds" is one payload.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from service.errors import RetryableJobError, TerminalJobError, WaitForEvent
from service.payloads import SimulatePayload
from service.tracing import job_step
from service.worker.context import TaskContext

CRASH_EXIT_CODE = 70
log = logging.getLogger("ast.worker.simulate")


def _misbehaves(spec: SimulatePayload, attempt: int) -> bool:
    return spec.outcome != "success" and (spec.fail_attempts is None or attempt <= spec.fail_attempts)


async def simulate(ctx: TaskContext) -> dict[str, Any]:
    spec = SimulatePayload.model_validate(ctx.payload)
    misbehave = _misbehaves(spec, ctx.attempt)
    step_s = spec.duration_ms / spec.steps / 1000
    for step in range(1, spec.steps + 1):
        with job_step(f"{step}/{spec.steps}", log_duration=False):
            if misbehave and step > spec.steps // 2:
                await _misbehave(spec, ctx)
            await asyncio.sleep(step_s)
            await ctx.update(progress=step * 100 // spec.steps, state=f"step {step}/{spec.steps}")
    if misbehave:
        await _misbehave(spec, ctx)
    if spec.wait_for_event is not None and ctx.resume_data is None:
        raise WaitForEvent(spec.wait_for_event.type, spec.wait_for_event.key)
    return {"outcome": "success", "steps": spec.steps, "attempt": ctx.attempt, "event": ctx.resume_data}


async def _misbehave(spec: SimulatePayload, ctx: TaskContext) -> None:
    if spec.outcome == "retryable":
        raise RetryableJobError(
            f"simulated transient failure on attempt {ctx.attempt}", code="SIMULATED_RETRYABLE"
        )
    if spec.outcome == "terminal":
        raise TerminalJobError("simulated terminal failure", code="SIMULATED_TERMINAL")
    if spec.outcome == "crash":
        log.warning("simulated crash: exiting the worker process", extra={"taskId": str(ctx.task_id)})
        logging.shutdown()
        os._exit(CRASH_EXIT_CODE)
    if spec.outcome == "hang":
        await asyncio.Event().wait()
