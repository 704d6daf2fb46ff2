"""Bounded readiness probes: a real request, retried until a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx

from harness.stack.base import ReadinessTimeout

T = TypeVar("T")


async def poll_until_ready(
    what: str,
    probe: Callable[[], Awaitable[object]],
    *,
    timeout: float,
    interval: float = 0.25,
    alive: Callable[[], bool] | None = None,
    explain: Callable[[], str] | None = None,
) -> float:
    """Retry `probe` until it returns without raising; return the seconds it took.

    `alive` lets a probe give up early when the process it waits for has already died;
    `explain` adds context (usually a log tail) to the error.
    """
    started = time.monotonic()
    last_error: BaseException | None = None
    while time.monotonic() - started < timeout:
        if alive is not None and not alive():
            break
        try:
            await probe()
            return time.monotonic() - started
        except Exception as exc:  # any failure of a probe means "not ready yet"
            last_error = exc
        await asyncio.sleep(interval)
    reason = "its process exited" if alive is not None and not alive() else f"not ready after {timeout:.0f}s"
    detail = f"\n--- last lines of its log ---\n{explain()}" if explain is not None else ""
    raise ReadinessTimeout(f"{what}: {reason} (last probe error: {last_error!r}){detail}")


async def http_ok(url: str, *, auth: tuple[str, str] | None = None, timeout: float = 2.0) -> None:
    """Raise unless GET `url` answers 200."""
    async with httpx.AsyncClient(timeout=timeout, auth=auth) as client:
        response = await client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} -> {response.status_code}")


def run_sync(coro: Coroutine[Any, Any, T], *, own_thread: bool = False) -> T:
    """Run a coroutine from sync code, even when the caller already runs an event loop.

    `own_thread=True` always uses a helper thread: asyncio.run() on the main thread would
    reset the thread's current loop, which pytest-asyncio's session loop relies on. Children
    are forked on the spawner thread, so a helper thread does not weaken the no-orphan guarantee.
    """
    if not own_thread:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="harness-run-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result
