"""Random fault schedules from a seed (Jepsen's generator for the nemesis), and their shrinking.

The same seed, duration and allowed set give the same schedule, so a FAIL replays with one
command. Process faults never overlap one another (one process fault at a time is what a
rollout or an outage looks like); a network fault may overlap one (a slow network during a
worker kill). Shrinking, as Hypothesis does with an example: a failing schedule's candidates
are the same schedule with one fault fewer, then with every hold halved.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from chaos.drill_model import NETWORK_FAULTS, Drill, FaultStep, StackNeeds, Workload

PROCESS_HOLDS: dict[str, tuple[float, float]] = {
    "broker-kill": (1.0, 4.0),
    "broker-restart": (0.0, 0.0),
    "db-restart": (0.0, 0.0),
    "db-kill": (1.0, 3.0),
    "worker-kill": (0.0, 0.0),
    "worker-rolling-restart": (0.0, 0.0),
    "relay-kill": (0.0, 0.0),
    "api-kill": (0.0, 0.0),
    "broker-partition": (1.0, 4.0),
}
OVERLAPPING: dict[str, tuple[float, float]] = {"slow-network": (3.0, 8.0), "db-latency": (3.0, 8.0)}
DEFAULT_ALLOWED = tuple(PROCESS_HOLDS) + tuple(OVERLAPPING)
STEADY_S = 6.0
TAIL_S = 8.0


def random_schedule(
    seed: int, duration_s: float, allowed: Sequence[str] = DEFAULT_ALLOWED
) -> list[FaultStep]:
    """Faults drawn from `allowed` over `duration_s` (after a steady state), deterministic in `seed`."""
    rng = random.Random(seed)
    process = sorted(name for name in allowed if name in PROCESS_HOLDS)
    overlapping = sorted(name for name in allowed if name in OVERLAPPING)
    steps: list[FaultStep] = []
    t = STEADY_S
    network_free_at = 0.0  # one network fault at a time: their toxics share the proxies
    while process and t < duration_s - TAIL_S:
        name = rng.choice(process)
        low, high = PROCESS_HOLDS[name]
        hold = round(rng.uniform(low, high), 1)
        steps.append(FaultStep(name=name, at_s=round(t, 1), hold_s=hold, ride_through=hold == 0))
        if overlapping and rng.random() < 0.3 and t - 1 > network_free_at:
            extra = rng.choice(overlapping)
            low, high = OVERLAPPING[extra]
            span = min(round(rng.uniform(low, high), 1), max(0.0, duration_s - t))
            network_free_at = t - 1 + span
            steps.append(
                FaultStep(name=extra, at_s=round(max(STEADY_S, t - 1), 1), hold_s=span, ride_through=True)
            )
        t += hold + rng.uniform(6.0, 12.0)
    return steps


def random_drill(seed: int, duration_s: float, allowed: Sequence[str] = DEFAULT_ALLOWED) -> Drill:
    faults = tuple(random_schedule(seed, duration_s, allowed))
    end = max([duration_s, *(f.heal_s for f in faults)])
    proxy = any(f.name in NETWORK_FAULTS for f in faults)
    return Drill(
        name=f"random-{seed}",
        description=f"random schedule, seed {seed}, {duration_s:g}s",
        stack=StackNeeds(proxy=proxy, durable=True),
        workload=Workload(duration_s=end, mix={"success": 0.85, "retryable": 0.1, "terminal": 0.05}),
        faults=faults,
    )


def shrink_candidates(drill: Drill) -> Iterator[Drill]:
    """Smaller schedules to try, simplest first: one fault fewer each, then every hold halved."""
    faults = drill.faults
    for index in range(len(faults)):
        yield drill.model_copy(update={"faults": faults[:index] + faults[index + 1 :]})
    if any(f.hold_s >= 1.0 for f in faults):
        halved = tuple(f.model_copy(update={"hold_s": round(f.hold_s / 2, 1)}) for f in faults)
        yield drill.model_copy(update={"faults": halved})
