"""The run's history: every request the harness makes and how it ended, as Jepsen records it.

Each call is two operations: an `invoke` written before the request leaves, and a completion
(`ok`, `fail` or `info`) written when its outcome is known. `info` means the outcome is unknown
(timeout, reset connection, 5xx): the request may or may not have taken effect, and the checker
must treat it so. Operations are appended to `history.jsonl` one JSON object per line as they
happen, so a run killed half way still leaves a readable history.

A nemesis records its faults here too, as Jepsen does: `fault_start` is an invocation (process
`nemesis`, `f` "fault", `path` the fault's name) and `fault_end` its completion when the fault is
healed (`ok`) or when whether it healed is unknown (`info`). Fault windows are read off these.

Recording is guarded by a `threading.Lock` that is never held across an `await`, so one History
can be shared by threads (Locust) and asyncio tasks alike.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal, cast

OpType = Literal["invoke", "ok", "fail", "info"]
COMPLETIONS: frozenset[str] = frozenset({"ok", "fail", "info"})
_FIELDS = (
    "index",
    "process",
    "type",
    "f",
    "method",
    "path",
    "body_digest",
    "idempotency_key",
    "time_ns",
    "wall_time",
    "invoke_index",
    "status_code",
    "task_id",
    "task_status",
    "error",
    "value",
)


def canonical_json(body: Any) -> str:
    """Sorted keys, no spaces, ASCII only: two equal bodies give the same text, hence the same
    digest, and any string (a lone surrogate a hostile test sends included) can be written."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


NEMESIS = "nemesis"
FAULT = "fault"


def request_summary(f: str, body: Any) -> Any:
    """What an invocation keeps of its body besides the digest: a submit's task type, which
    invariant 12 compares with the type a client later reads."""
    if f == "submit" and isinstance(body, dict) and isinstance(body.get("type"), str):
        return {"type": body["type"]}
    return None


def body_digest(body: Any) -> str | None:
    """sha256 of the canonical JSON body; None when the request has no body."""
    if body is None:
        return None
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True)
class Operation:
    """One line of history.jsonl.

    `time_ns` is `time.monotonic_ns()` (orders operations of one run); `wall_time` is epoch
    seconds (joins the history with logs). A completion carries `invoke_index`, the index of
    its invocation, and repeats the request fields so each line reads on its own.
    """

    index: int
    process: str
    type: OpType
    f: str
    method: str
    path: str
    body_digest: str | None = None
    idempotency_key: str | None = None
    time_ns: int = 0
    wall_time: float = 0.0
    invoke_index: int | None = None
    status_code: int | None = None
    task_id: str | None = None
    task_status: str | None = None
    error: str | None = None
    value: Any = None

    def to_json(self) -> str:
        return canonical_json({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Operation:
        known = {k: raw[k] for k in _FIELDS if k in raw}
        if known.get("type") not in {"invoke", *COMPLETIONS}:
            raise ValueError(f"history line {raw.get('index')} has no valid type: {raw.get('type')!r}")
        return cls(**known)


class History:
    """An append-only list of operations, optionally mirrored line by line to a JSONL file."""

    def __init__(self, path: Path | None = None, ops: Sequence[Operation] = ()) -> None:
        self._lock = threading.Lock()
        self._ops: list[Operation] = list(ops)
        self._file: IO[str] | None = None
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    @classmethod
    def from_ops(cls, ops: Sequence[Operation]) -> History:
        """An in-memory history, for checkers run on made-up operations."""
        return cls(None, ops)

    def invoke(
        self,
        process: str,
        f: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> Operation:
        """Records that a request is about to be sent; returns the invocation to complete later."""
        op = Operation(
            index=0,
            process=process,
            type="invoke",
            f=f,
            method=method,
            path=path,
            body_digest=body_digest(body),
            idempotency_key=idempotency_key,
            value=request_summary(f, body),
        )
        return self._append(op)

    def fault_start(self, name: str, **details: Any) -> Operation:
        """A nemesis begins fault `name` (details: its target, parameters); returns the invocation."""
        op = Operation(0, NEMESIS, "invoke", FAULT, method="FAULT", path=name, value=details)
        return self._append(op)

    def fault_end(self, start: Operation, *, healed: bool = True, **details: Any) -> Operation:
        """The fault begun by `start` is over: healed (`ok`), or its end is unknown (`info`)."""
        value = {**(start.value or {}), **details}
        return self.complete(start, "ok" if healed else "info", value=value)

    def complete(
        self,
        invocation: Operation,
        type: OpType,
        *,
        status_code: int | None = None,
        task_id: str | None = None,
        task_status: str | None = None,
        error: str | None = None,
        value: Any = None,
    ) -> Operation:
        """Records how `invocation` ended: ok, fail (a definite refusal) or info (unknown)."""
        if type not in COMPLETIONS:
            raise ValueError(f"a completion is ok, fail or info, not {type!r}")
        op = replace(
            invocation,
            type=type,
            invoke_index=invocation.index,
            status_code=status_code,
            task_id=task_id,
            task_status=task_status,
            error=error,
            value=value,
        )
        return self._append(op)

    def _append(self, op: Operation) -> Operation:
        with self._lock:
            stamped = replace(op, index=len(self._ops), time_ns=time.monotonic_ns(), wall_time=time.time())
            self._ops.append(stamped)
            if self._file is not None:
                self._file.write(stamped.to_json() + "\n")
                self._file.flush()
        return stamped

    @property
    def ops(self) -> tuple[Operation, ...]:
        with self._lock:
            return tuple(self._ops)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def completions(self, f: str | None = None) -> list[Operation]:
        """Completed operations (ok/fail/info), optionally only those of function `f`."""
        return [op for op in self.ops if op.type != "invoke" and (f is None or op.f == f)]

    def pending(self) -> list[Operation]:
        """Invocations with no completion yet: the client crashed or the run stopped mid-call.

        The checker treats these like `info`: they may or may not have happened.
        """
        ops = self.ops
        done = {op.invoke_index for op in ops if op.type != "invoke"}
        return [op for op in ops if op.type == "invoke" and op.index not in done]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_history(path: Path) -> History:
    """Reads a history.jsonl back; a torn last line (the run was killed mid-write) is dropped."""
    ops: list[Operation] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break
            raise
        ops.append(Operation.from_dict(cast(dict[str, Any], raw)))
    return History.from_ops(ops)
