"""A worker with a bug planted on purpose, to show a drill catches it: it acknowledges each job
message before the job runs and commits (ack-before-commit), so a worker killed mid-job takes
its task's only message with it. Test-only: `python -m tests.planted.worker`, never shipped.

It is the service's own worker with one method wrapped; `service/` is not touched.
"""

from __future__ import annotations

from typing import Any

from service.worker import main as worker_main
from service.worker.processor import MessageProcessor


class _AlreadyAcked:
    """The message, already acknowledged: whatever the processor settles later is a no-op."""

    processed = True

    def __init__(self, message: Any) -> None:
        self._message = message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)

    async def ack(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def nack(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def reject(self, *args: Any, **kwargs: Any) -> None:
        return None


_run = MessageProcessor._run


async def _acks_first(self: MessageProcessor, message: Any, job: Any, task: Any) -> None:
    await message.ack()
    await _run(self, _AlreadyAcked(message), job, task)  # type: ignore[arg-type]


def main() -> None:
    MessageProcessor._run = _acks_first  # type: ignore[method-assign]
    worker_main.main()


if __name__ == "__main__":
    main()
