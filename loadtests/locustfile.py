"""Locust load test of the AST job service.

Plain Locust runs it as Locust users expect, web UI or headless:

    locust -f loadtests/locustfile.py --host $API_URL
    locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 30s --host $API_URL

`harness load` runs it too, adding a load shape: with `LOAD_SHAPE` set (steady, spike or soak)
the matching `LoadTestShape` is defined, and Locust follows it instead of -u/-r/-t. The profile
(`LOAD_PROFILE`, `LOAD_USERS`, ...) chooses the workload; see loadtests/profiles.py.

With `--slo FILE` (the SLO file of `harness load`), Locust judges the SLOs it measures itself when
it quits and exits 1 naming each that failed (loadtests/slo_gate.py).

Every request is recorded in `histories/locust-<pid>.jsonl` of the run directory named by
`HARNESS_RUN_DIR` (a new `reports/out/<ts>-load/` when unset), so the invariant checker can judge
the run like any other: `harness load` does so after every run. In a distributed run the workers
also send what they record to the master, whose run directory thus holds every history
(loadtests/shipping.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events

from harness.load.profiles import SHAPE_ENV
from harness.record import RUN_DIR_ENV
from loadtests import shapes, shipping, slo_gate
from loadtests.users import PROFILE, RECORDER, ServiceUser

__all__ = ["ServiceUser"]

if not os.environ.get(RUN_DIR_ENV):
    # Chosen before Locust forks its --processes, so every process of this run records into one directory.
    os.environ[RUN_DIR_ENV] = str(Path("reports/out") / f"{time.strftime('%Y%m%d-%H%M%S')}-load")


def _shape_class(name: str) -> type[LoadTestShape]:
    """A LoadTestShape named `name` (steady, spike, soak) over the profile's users and duration."""
    plan = shapes.stages_for(replace(PROFILE, name=name))

    def tick(self: LoadTestShape) -> tuple[int, float] | None:
        return shapes.tick(plan, self.get_run_time())  # type: ignore[no-untyped-call]  # Locust's

    return type(name, (LoadTestShape,), {"tick": tick, "__doc__": f"The {name} load shape ({plan})."})


if os.environ.get(SHAPE_ENV):
    Shape = _shape_class(os.environ[SHAPE_ENV])


def _close_history(environment: Any, **_: Any) -> None:
    RECORDER.close()


events.quitting.add_listener(_close_history)  # type: ignore[no-untyped-call]  # Locust's
events.quitting.add_listener(slo_gate.judge_on_quit)  # type: ignore[no-untyped-call]
events.init_command_line_parser.add_listener(slo_gate.add_arguments)  # type: ignore[no-untyped-call]
events.init.add_listener(shipping.register)  # type: ignore[no-untyped-call]
events.report_to_master.add_listener(shipping.ship)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(shipping.ship)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(shipping.collect)  # type: ignore[no-untyped-call]
