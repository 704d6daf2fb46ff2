"""A drill as data: the TOML file a user writes, validated into one typed `Drill`.

A drill is Chaos Toolkit's experiment with Jepsen's parts underneath: a `[workload]` of simulate
jobs (the generator), `[[faults]]` on a schedule (the nemesis: inject at `at_s`, heal after
`hold_s`), `[expect]` (what the checker must see beyond the contract's invariants) and `[stack]`
(what the embedded stack needs). A bad field or an unknown fault is one line naming it
(`DrillFileError`), never a traceback.

    name = "broker-kill"
    description = "RabbitMQ killed with SIGKILL, restarted after a pause"
    [stack]
    proxy = false
    [workload]
    rate = 5.0
    duration_s = 20
    [workload.mix]
    success = 0.9
    retryable = 0.1
    [[faults]]
    name = "broker-kill"
    at_s = 6
    hold_s = 4
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONTRACT_DRILLS = (
    "broker-kill",
    "broker-restart",
    "broker-node-loss",
    "broker-partition",
    "db-restart",
    "db-kill",
    "db-latency",
    "slow-network",
    "worker-kill",
    "worker-rolling-restart",
    "relay-kill",
    "api-kill",
    "poison-message",
    "retry-exhaustion",
    "job-timeout",
    "duplicate-delivery",
)
NETWORK_FAULTS = frozenset({"broker-partition", "db-latency", "slow-network"})
WORKLOAD_FAULTS = frozenset({"poison-message", "retry-exhaustion", "job-timeout", "duplicate-delivery"})
PROCESS_KINDS = ("broker", "db", "worker", "relay", "api")
PROCESS_ACTIONS = ("kill", "stop", "pause", "restart")
EXTRA_FAULTS = frozenset(f"{kind}-{action}" for kind in PROCESS_KINDS for action in PROCESS_ACTIONS)
KNOWN_FAULTS = frozenset(CONTRACT_DRILLS) | EXTRA_FAULTS
DRILLS_DIR = Path(__file__).resolve().parent / "drills"
Outcome = Literal["success", "retryable", "terminal", "crash", "hang", "wait"]


def _all_success() -> dict[Outcome, float]:
    return {"success": 1.0}


class DrillFileError(Exception):
    """A drill file that cannot be used; the message is one line naming the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StackNeeds(_Strict):
    """What the embedded stack must offer: the proxy (network faults), a cluster, crash-safe storage."""

    proxy: bool = False
    rabbit_nodes: Literal[1, 3] = 1
    durable: bool = False
    workers: int = Field(default=2, ge=1, le=8)


class Workload(_Strict):
    """Simulate jobs at a steady `rate` for `duration_s`; `mix` gives each outcome's share
    (normalised); misbehaving outcomes misbehave on their first `fail_attempts` attempts only."""

    rate: float = Field(default=5.0, gt=0, le=200)
    duration_s: float = Field(default=20.0, gt=0, le=3600)
    steady_s: float = Field(default=5.0, ge=1, description="seconds of steady state before any fault")
    job_ms: tuple[int, int] = (20, 150)
    steps: int = Field(default=3, ge=1, le=100)
    fail_attempts: int = Field(default=1, ge=1, le=100)
    mix: dict[Outcome, float] = Field(default_factory=lambda: _all_success())

    @field_validator("job_ms")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError("job_ms is [min, max] with 0 <= min <= max")
        return value

    @field_validator("mix")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if any(share < 0 for share in value.values()) or sum(value.values()) <= 0:
            raise ValueError("mix shares are >= 0 and not all 0")
        return value


class FaultStep(_Strict):
    """One fault of the schedule: injected `at_s` after the workload starts, healed `hold_s` later
    (0: a kill or restart the system rides through). `count`: jobs a workload fault injects."""

    name: str
    at_s: float = Field(ge=0)
    hold_s: float = Field(default=0.0, ge=0)
    ride_through: bool = False
    count: int = Field(default=3, ge=1, le=1000)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in KNOWN_FAULTS:
            raise ValueError(f"unknown fault {value!r} (known: {', '.join(sorted(KNOWN_FAULTS))})")
        return value

    @property
    def heal_s(self) -> float:
        return self.at_s + self.hold_s


class Expect(_Strict):
    """The drill's own expectations beyond the invariants. `dead_letter_reason`: the DLQ holds
    exactly the jobs the workload faults poisoned or exhausted, each with this `x-death` reason;
    `replay`: a DLQ replay brings every one of them back; `runs_once`: duplicated messages
    complete their task once; `max_recovery_s`: throughput back at 90% within this."""

    dead_letter_reason: str | None = None
    replay: bool = False
    runs_once: bool = False
    max_recovery_s: float | None = Field(default=None, gt=0)
    settle_s: float = Field(default=60.0, gt=0, le=900)


class Drill(_Strict):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    stack: StackNeeds = Field(default_factory=StackNeeds)
    workload: Workload = Field(default_factory=Workload)
    faults: tuple[FaultStep, ...] = ()
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _fits(self) -> Drill:
        for step in self.faults:
            if step.heal_s > self.workload.duration_s:
                raise ValueError(f"fault {step.name} heals at {step.heal_s:g}s, after the workload ends")
            if step.name in NETWORK_FAULTS and not self.stack.proxy:
                raise ValueError(f"fault {step.name} needs the proxy: set stack.proxy = true")
            if step.name == "broker-node-loss" and self.stack.rabbit_nodes != 3:
                raise ValueError("fault broker-node-loss needs stack.rabbit_nodes = 3")
        return self

    @property
    def first_fault_s(self) -> float | None:
        return min((f.at_s for f in self.faults), default=None)


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "drill"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {message}{more}"


def parse_drill(data: dict[str, Any], source: str = "drill") -> Drill:
    """The drill `data` describes; DrillFileError with one line naming `source` and the field."""
    try:
        return Drill.model_validate(data)
    except ValidationError as error:
        raise DrillFileError(f"{source}: {_one_line(error)}") from None


def load_drill(path: Path) -> Drill:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DrillFileError(f"{path}: cannot read it ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise DrillFileError(f"{path}: not TOML ({error})") from None
    return parse_drill(data, str(path))


def builtin_drills(directory: Path = DRILLS_DIR) -> dict[str, Drill]:
    """The built-in drills by name, in the contract's order (then any other file's, by name)."""
    found = {drill.name: drill for drill in map(load_drill, sorted(directory.glob("*.toml")))}
    order = {name: index for index, name in enumerate(CONTRACT_DRILLS)}
    return dict(sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
