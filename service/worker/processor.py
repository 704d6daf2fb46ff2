"""One job message from delivery to acknowledgement.

The message is settled only after PostgreSQL holds the outcome: ack for completed, retried, waiting,
cancelled and duplicate work; reject (requeue=False) for what must land in the dead-letter queue.
RabbitMQ 4.3 counts only rejects toward the delivery limit, so dead-lettering never uses nack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aiormq
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from service.broker.topology import JOB_QUEUES, retry_delay_ms
from service.config import Settings
from service.driver_errors import DATABASE_ERRORS, REFUSED_VALUE_ERRORS
from service.errors import (
    InfrastructureError,
    RetryableJobError,
    TaskCancelled,
    TaskNotRunnable,
    TerminalJobError,
    WaitForEvent,
)
from service.logs import bind_job
from service.models import Status, TaskType
from service.payloads import READABLE_JSON, json_problem
from service.tracing import traceparent_for
from service.worker.jobs import job_for
from service.worker.lifecycle import LOST_RUNS_HEADER, Claim, Failure, TaskLifecycle, storable_text
from service.worker.middleware import (
    LoggingMiddleware,
    MetricsMiddleware,
    Middleware,
    TimeoutMiddleware,
    TracingMiddleware,
    chain,
)
from service.worker.slots import JobSlots

log = logging.getLogger("ast.worker")
T = TypeVar("T")
DeadLetter = Callable[[AbstractIncomingMessage, str], Awaitable[None]]
_DB_ERRORS = DATABASE_ERRORS
_HAND_BACK_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, asyncio.CancelledError)
_BUILTIN_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)
# An outage of ours, met by a job: the context's database calls (converted to InfrastructureError)
# or a driver's own error. A plain OSError raised by a job is its own disk or network: no outage.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    InfrastructureError,
    *(kind for kind in DATABASE_ERRORS if not issubclass(kind, _BUILTIN_ERRORS)),
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
)
_HELD_FLUSH_ERRORS: tuple[type[BaseException], ...] = (
    TaskCancelled, TaskNotRunnable, InfrastructureError, *DATABASE_ERRORS
)
_BUSY_POLL_S = 0.5
SUSPECT_PATIENCE_S = 30.0
"""How long a suspect job waits for the worker's other jobs to end before it runs beside them."""
_REASON_CHARS = 300
RESULT_UNSTORABLE = "RESULT_UNSTORABLE"
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", type(None): "null"}


class PoisonMessage(Exception):
    """A message that is not a job of ours; it goes to the DLQ with this reason."""

    def __init__(self, reason: str, task_id: uuid.UUID | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:_REASON_CHARS]
        self.task_id = task_id


@dataclass(frozen=True)
class JobMessage:
    """What a job message says: which task to run, under which delivery. The task row, not the
    message, decides what runs (`task_type` is replaced by the row's once the task is claimed)."""

    task_id: uuid.UUID
    task_type: TaskType
    message_id: str | None
    delivery_count: int
    trace_id: str | None = None
    traceparent: str | None = None
    lost_runs: int = 0

    @property
    def is_suspect(self) -> bool:
        """Delivered before (its worker died, or lost the broker) or re-published after lost runs:
        it may be the job that kills its worker, so it runs alone (service/worker/slots.py)."""
        return self.delivery_count > 0 or self.lost_runs > 0

    @classmethod
    def parse(cls, message: AbstractIncomingMessage) -> JobMessage:
        """Raises PoisonMessage, and nothing else, for any message it cannot read: a body can make
        the decoder raise more than ValueError (RecursionError for deep nesting), and whatever
        escapes here would leave the message unsettled, holding a prefetch slot for good."""
        try:
            return cls._read(message)
        except PoisonMessage:
            raise
        except Exception as error:  # noqa: BLE001 - every failure to read a message is poison
            raise PoisonMessage(f"unreadable job message: {type(error).__name__}: {error}") from None

    @classmethod
    def _read(cls, message: AbstractIncomingMessage) -> JobMessage:
        body = json.loads(message.body)
        if not isinstance(body, dict):
            raise ValueError(f"the body is {_JSON_KINDS.get(type(body), 'JSON')}, not a JSON object")
        if not isinstance(body.get("taskId"), str):
            raise ValueError("taskId is missing or not a string")
        task_id = uuid.UUID(body["taskId"])
        if body.get("type") not in TaskType.__members__.values():
            raise PoisonMessage("the message names no known job type", task_id)
        if message.message_id is not None and "\x00" in message.message_id:
            raise PoisonMessage("the message id holds a NUL, which PostgreSQL cannot store", task_id)
        headers = message.headers or {}
        delivery_count = _count_header(headers, "x-delivery-count")
        trace = _text_or_none(body.get("traceId")), _traceparent(body, headers)
        lost_runs = _count_header(headers, LOST_RUNS_HEADER)
        return cls(task_id, TaskType(body["type"]), message.message_id, delivery_count, *trace, lost_runs)


def _text_or_none(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None


def _traceparent(body: Mapping[str, Any], headers: Mapping[str, Any]) -> str | None:
    """The W3C trace context of the submit, from the body or an AMQP header (either may carry it)."""
    value = body.get("traceparent", headers.get("traceparent"))
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return _text_or_none(value)


def _count_header(headers: Mapping[str, Any], name: str) -> int:
    """A count header (the broker's `x-delivery-count`, our `x-ast-lost-runs`); anything but a
    plain count (a publisher's header) is 0."""
    count = headers.get(name, 0)
    if isinstance(count, int) and not isinstance(count, bool):
        return max(count, 0)
    if isinstance(count, str) and count.isascii() and count.isdigit() and len(count) < 10:
        return int(count)
    return 0


class PostgresTaskContext:
    """The TaskContext of a running job; a report on a cancelled task raises TaskCancelled."""

    def __init__(
        self,
        lifecycle: TaskLifecycle,
        task: asyncpg.Record,
        settings: Settings,
        traceparent: str | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self.task_id: uuid.UUID = task["task_id"]
        self.trace_id: str | None = task.get("trace_id")
        derived = None if self.trace_id is None else traceparent_for(self.trace_id, self.task_id)
        self.traceparent = traceparent or derived
        self.task_type: str = task["type"]
        self.payload: dict[str, Any] = task["payload"]
        self.attempt: int = task["attempt"]
        self.retry_count: int = task["retry_count"]
        self.resume_data: dict[str, Any] | None = task["resume_data"]
        self.temp_dir: Path = settings.temp_dir
        self.artifacts_dir: Path = settings.artifacts_dir
        self._held: tuple[int, str | None] | None = None

    async def update(self, *, progress: int | None = None, state: str | None = None) -> None:
        """Records a report; one of 100% is held back instead (see `flush`): the completion that
        normally follows writes progress 100 in its own statement, so a job's last report costs no
        round trip. A later report writes the held one with it, so nothing is lost or reordered."""
        state = None if state is None else storable_text(state)
        if self._held is not None:
            held_progress, held_state = self._held
            self._held = None
            progress = max(held_progress, progress or 0)
            state = held_state if state is None else state
        if progress is not None and progress >= 100:
            self._held = (progress, state)
            return
        await self._report(progress, state)

    async def flush(self) -> None:
        """Writes a held 100% report; for every outcome but completion, whose statement holds it."""
        if self._held is not None:
            progress, state = self._held
            self._held = None
            await self._report(progress, state)

    async def _report(self, progress: int | None, state: str | None) -> None:
        try:
            reported = await self._lifecycle.report(self.task_id, progress, state)
        except DATABASE_ERRORS as error:
            raise InfrastructureError(f"progress not recorded: {type(error).__name__}: {error}") from error
        if not reported:
            await self.raise_if_lost()

    async def raise_if_lost(self) -> None:
        status = await self._lifecycle.status_of(self.task_id)
        if status == Status.CANCELLED:
            raise TaskCancelled(f"task {self.task_id} was cancelled")
        raise TaskNotRunnable(f"task {self.task_id} is no longer ours ({status})")

    async def fetch_result(self, task_id: uuid.UUID) -> tuple[str, dict[str, Any] | None] | None:
        return await self._lifecycle.task_result(task_id)


class MessageProcessor:
    def __init__(self, lifecycle: TaskLifecycle, settings: Settings, dead_letter: DeadLetter) -> None:
        self._lifecycle = lifecycle
        self._settings = settings
        self._dead_letter = dead_letter
        self._slots = JobSlots(settings.worker_concurrency)
        self._middlewares: list[Middleware] = [
            TracingMiddleware(),
            MetricsMiddleware(),
            LoggingMiddleware(),
            TimeoutMiddleware(settings.job_timeout_ms),
        ]

    async def process(self, message: AbstractIncomingMessage) -> None:
        """Settles `message` whatever happens: a message this worker stopped working on is never
        left unsettled, where it would hold a prefetch slot until the connection closes."""
        try:
            await self._process(message)
        except asyncio.CancelledError:
            if not message.processed:
                await _settle(message.nack(requeue=True))
            raise
        except Exception:  # noqa: BLE001 - the last line of defence; the traceback is the reason
            log.exception("the worker failed on a message", extra={"messageId": message.message_id})
        if not message.processed:
            log.error("message not settled: rejected to the DLQ", extra={"messageId": message.message_id})
            await _settle(message.reject(requeue=False))

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            job = JobMessage.parse(message)
        except PoisonMessage as poison:
            return await self._poison(message, poison)
        with bind_job(str(job.task_id), job.task_type.value, job.trace_id):
            async with self._slot_for(job):
                await self._process_parsed(message, job)

    def _slot_for(self, job: JobMessage) -> AbstractAsyncContextManager[object]:
        """A message at the broker's delivery limit takes no slot and never waits: it is only
        dead-lettered or re-published (`TaskLifecycle.claim`), before another crash could return it
        once more and make the broker dead-letter it behind the service's back."""
        if job.delivery_count >= self._settings.rabbit_delivery_limit:
            return contextlib.nullcontext()
        if job.is_suspect:
            log.info(
                "suspect job (delivered %d times before, %d runs lost): it runs alone",
                job.delivery_count,
                job.lost_runs,
                extra={"taskId": str(job.task_id), "step": "suspect"},
            )
            return self._slots.alone(SUSPECT_PATIENCE_S)
        return self._slots.one()

    async def _process_parsed(self, message: AbstractIncomingMessage, job: JobMessage) -> None:
        try:
            await self._process_job(message, job)
        except _DB_ERRORS as error:
            log.error(
                "database unavailable, message returned to the queue: %s",
                error,
                extra={"taskId": str(job.task_id)},
            )
            await _settle(message.nack(requeue=True))
        except Exception:  # noqa: BLE001 - an unsettled message would stall its task until reconnect
            log.exception(
                "unexpected failure, message returned to the queue", extra={"taskId": str(job.task_id)}
            )
            await _settle(message.nack(requeue=True))

    async def _poison(self, message: AbstractIncomingMessage, poison: PoisonMessage) -> None:
        """One log line per poison message (the reason, with its taskId when it named one), then
        the DLQ with the reason in the `x-ast-reason` header."""
        extra: dict[str, Any] = {"messageId": message.message_id, "step": "poison"}
        if poison.task_id is not None:
            extra["taskId"] = str(poison.task_id)
        log.error("poison message sent to the DLQ: %s", poison.reason, extra=extra)
        await self._dead_letter(message, poison.reason)

    async def _process_job(self, message: AbstractIncomingMessage, job: JobMessage) -> None:
        while True:
            claim = await self._db(
                lambda: self._lifecycle.claim(
                    job.task_id, job.message_id, job.delivery_count, self._settings.rabbit_delivery_limit
                )
            )
            if claim.claim is not Claim.BUSY:
                break
            await asyncio.sleep(_BUSY_POLL_S)
        if claim.claim is Claim.UNKNOWN:
            await self._poison(message, PoisonMessage(f"task {job.task_id} does not exist", job.task_id))
        elif claim.claim is Claim.DEAD_LETTER:
            log.warning("task failed: %s", claim.reason, extra={"taskId": str(job.task_id)})
            await _settle(message.reject(requeue=False))
        elif claim.claim is Claim.SETTLED:
            log.info("message settled without work: %s", claim.reason, extra={"taskId": str(job.task_id)})
            await _settle(message.ack())
        else:
            assert claim.task is not None
            await self._run(message, replace(job, task_type=TaskType(claim.task["type"])), claim.task)

    async def _run(self, message: AbstractIncomingMessage, job: JobMessage, task: asyncpg.Record) -> None:
        ctx = PostgresTaskContext(self._lifecycle, task, self._settings, job.traceparent)
        handler = chain(job_for(job.task_type, self._settings), self._middlewares)
        runner = asyncio.ensure_future(handler(ctx))
        watcher = _Watcher(lambda: self._watch(ctx, runner), self._heartbeat_interval_s)
        try:
            result = await runner
        except asyncio.CancelledError:
            if watcher.stopped_the_job():
                return await self._settle_cancelled(message, ctx)
            await self._hand_back(message, job)
            raise
        except BaseException as error:  # noqa: BLE001 - every job outcome is settled below
            await self._flush_held(ctx)
            return await self._settle_error(message, job, error)
        finally:
            watcher.cancel()
        await self._complete(message, job, ctx, result)

    async def _flush_held(self, ctx: PostgresTaskContext) -> None:
        """The held 100% report before any outcome but completion, as if it had been written at
        once; a task no longer ours, or a database that fails now, is the outcome's to handle."""
        try:
            await ctx.flush()
        except _HELD_FLUSH_ERRORS:
            log.debug("held progress not written", exc_info=True)

    async def _complete(
        self, message: AbstractIncomingMessage, job: JobMessage, ctx: PostgresTaskContext, result: Any
    ) -> None:
        """Stores the result, or fails the task terminally when it cannot be stored: a result that
        PostgreSQL or a reader would refuse is refused again on every retry, so handing it back
        would run the job forever."""
        problem = result_problem(result)
        if problem is None:
            problem = await self._store_result(job, result)
        if problem is None:
            return await _settle(message.ack())
        log.warning("result not stored: %s", problem, extra={"taskId": str(job.task_id), "step": "complete"})
        await self._flush_held(ctx)
        failure = Failure(
            RESULT_UNSTORABLE, f"the job's result cannot be stored: {problem}", dead_letter=True
        )
        await self._fail_terminally(message, job, failure)

    async def _store_result(self, job: JobMessage, result: dict[str, Any]) -> str | None:
        """None once stored (or dropped: the task is no longer ours), else why PostgreSQL refused it."""
        try:
            ok = await self._db(lambda: self._lifecycle.complete(job.task_id, result, job.message_id))
        except REFUSED_VALUE_ERRORS as error:
            return f"PostgreSQL refused it ({_refusal(error)})"
        if not ok:
            log.warning(
                "result dropped: the task was cancelled or taken over", extra={"taskId": str(job.task_id)}
            )
        return None

    async def _fail_terminally(
        self, message: AbstractIncomingMessage, job: JobMessage, failure: Failure
    ) -> None:
        """FAILED, and the message rejected to the DLQ; acked when the task was no longer ours."""
        failed = await self._db(lambda: self._lifecycle.fail(job.task_id, failure, job.message_id))
        await _settle(message.reject(requeue=False) if failed else message.ack())

    @property
    def _heartbeat_interval_s(self) -> float:
        return min(1.0, self._settings.worker_lease_ms / 3000)

    async def _watch(self, ctx: PostgresTaskContext, runner: asyncio.Future[Any]) -> bool:
        """Extends the lease; stops the job when its task is cancelled or taken over. True if so.
        Started one interval into the job (by `_Watcher`), so it beats first and sleeps after."""
        while not runner.done():
            try:
                alive = await self._lifecycle.heartbeat(ctx.task_id)
            except _DB_ERRORS:
                continue
            if not alive and not runner.done():
                runner.cancel()
                return True
            await asyncio.sleep(self._heartbeat_interval_s)
        return False

    async def _settle_cancelled(self, message: AbstractIncomingMessage, ctx: PostgresTaskContext) -> None:
        log.info("job stopped: its task was cancelled or taken over", extra={"taskId": str(ctx.task_id)})
        await _settle(message.ack())

    async def _settle_error(
        self, message: AbstractIncomingMessage, job: JobMessage, error: BaseException
    ) -> None:
        if isinstance(error, WaitForEvent):
            await self._db(
                lambda: self._lifecycle.wait_for_event(
                    job.task_id, error.event_type, error.key, job.message_id
                )
            )
            await _settle(message.ack())
        elif isinstance(error, TaskCancelled | TaskNotRunnable):
            await _settle(message.ack())
        elif isinstance(error, TerminalJobError):
            await self._fail_terminally(message, job, Failure(error.code, error.message, dead_letter=True))
        elif isinstance(error, OUTAGE_ERRORS):
            await self._hand_back_after_outage(message, job, error)
        else:
            await self._retry(message, job, error)

    async def _retry(self, message: AbstractIncomingMessage, job: JobMessage, error: BaseException) -> None:
        if isinstance(error, RetryableJobError):
            failure = Failure(error.code, error.message, dead_letter=False)
        else:
            log.exception(
                "job raised an unexpected error", exc_info=error, extra={"taskId": str(job.task_id)}
            )
            failure = Failure("INTERNAL_ERROR", f"{type(error).__name__}: {error}", dead_letter=False)
        queue = JOB_QUEUES[job.task_type]

        def retry_queue(retry_count: int) -> str:
            return queue.retry_queue(retry_delay_ms(retry_count, self._settings.retry_base_ms))

        acked = await self._db(
            lambda: self._lifecycle.retry(job.task_id, failure, retry_queue, job.message_id)
        )
        await _settle(message.ack() if acked else message.reject(requeue=False))

    async def _hand_back(self, message: AbstractIncomingMessage, job: JobMessage) -> None:
        try:
            handed = await asyncio.wait_for(self._lifecycle.hand_back(job.task_id, job.message_id), 5)
        except _HAND_BACK_ERRORS:
            handed = False
        await _settle(message.ack() if handed else message.nack(requeue=True))
        log.info("job handed back on shutdown", extra={"taskId": str(job.task_id), "step": "shutdown"})

    async def _hand_back_after_outage(
        self, message: AbstractIncomingMessage, job: JobMessage, error: BaseException
    ) -> None:
        """PENDING again with a fresh message, riding out the outage; the retry count is untouched."""
        reason = f"handed back: infrastructure error {type(error).__name__}: {error}"[:_REASON_CHARS]
        log.warning(reason, extra={"taskId": str(job.task_id), "step": "hand_back"})
        handed = await self._db(lambda: self._lifecycle.hand_back(job.task_id, job.message_id, reason))
        await _settle(message.ack() if handed else message.nack(requeue=True))

    async def _db(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Rides out a short database outage (a restart) before giving the message back."""
        delay = 0.2
        for _ in range(12):
            try:
                return await operation()
            except _DB_ERRORS as error:
                log.warning("database call failed, retrying: %s", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)
        return await operation()


class _Watcher:
    """The job's heartbeat task, started only once the job has run one interval: most jobs end
    before that, and a timer is far cheaper than a task that is created only to be cancelled."""

    def __init__(self, watch: Callable[[], Awaitable[bool]], interval_s: float) -> None:
        self._watch = watch
        self._task: asyncio.Future[bool] | None = None
        self._timer = asyncio.get_running_loop().call_later(interval_s, self._start)

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._watch())

    def stopped_the_job(self) -> bool:
        """True when the watch cancelled the job because its task was cancelled or taken over."""
        return self._task is not None and self._task.done() and self._task.result()

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


def result_problem(result: Any) -> str | None:
    """Why a job's result cannot be stored and read back, or None; never quotes the result.

    The same bounds as every stored value (`READABLE_JSON`: no NaN, NUL or lone surrogate, a
    depth a reader can serialize), then the jsonb codec's own encoding, which also fails on what
    those bounds let through (an integer past Python's digit limit).
    """
    if not isinstance(result, dict):
        return "it is not a JSON object"
    problem = json_problem(result, READABLE_JSON)
    if problem is not None:
        return problem
    try:
        json.dumps(result)
    except (ValueError, TypeError, RecursionError) as error:
        return f"it cannot be encoded as JSON ({type(error).__name__})"
    return None


def _refusal(error: Exception) -> str:
    """The refusal's SQLSTATE and kind: the driver's message may quote the value, so not that."""
    return f"SQLSTATE {getattr(error, 'sqlstate', None) or '?'}, {type(error).__name__}"


async def _settle(action: Awaitable[None]) -> None:
    """Ack/reject on a channel that died is harmless: the broker redelivers, the inbox dedupes."""
    try:
        await action
    except Exception as error:  # noqa: BLE001 - any channel failure means the broker redelivers
        log.warning("could not settle message (channel gone, it will be redelivered): %s", error)
