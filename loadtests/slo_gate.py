"""The SLO gate of a plain Locust run: `locust -f loadtests/locustfile.py --slo FILE` judges, when
Locust quits, the SLOs Locust itself measures, and sets its exit code (1 naming each that failed).

Locust measures the submit latency and errors, the submit-to-terminal time its users report, and
the accepted rate. Queue depth and worker memory need the harness's sampler: `harness load`
judges every SLO from the run record (and does not pass `--slo` to Locust).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from locust.runners import WorkerRunner
from locust.stats import RequestStats, calculate_response_time_percentile

from harness.load.slo import evaluate, load_slo_file, thresholds_for

LOCUST_MEASURES = frozenset(
    {
        "submit_p50_ms",
        "submit_p95_ms",
        "submit_p99_ms",
        "submit_error_rate",
        "complete_p95_s",
        "throughput_min_per_s",
    }
)
SUBMIT = ("/tasks", "POST")
JOB = "JOB"
logger = logging.getLogger("loadtests.slo")


def _percentile(times: dict[int, int], count: int, q: float) -> float | None:
    return float(calculate_response_time_percentile(times, count, q)) if count else None


def locust_metrics(stats: RequestStats) -> dict[str, float | None]:
    """The SLO metrics (harness/load/slo.py) that Locust's own statistics give."""
    metrics: dict[str, float | None] = dict.fromkeys(LOCUST_MEASURES)
    submit = stats.entries.get(SUBMIT)
    if submit is not None and submit.num_requests:
        count = submit.num_requests
        for q in (50, 95, 99):
            metrics[f"submit_p{q}_ms"] = _percentile(submit.response_times, count, q / 100)
        metrics["submit_error_rate"] = submit.num_failures / count
        seconds = (submit.last_request_timestamp or submit.start_time) - submit.start_time
        metrics["throughput_min_per_s"] = (count - submit.num_failures) / seconds if seconds > 0 else None
    jobs: Counter[int] = Counter()
    for (_, method), entry in stats.entries.items():
        if method == JOB:
            jobs.update(entry.response_times)
    complete_ms = _percentile(dict(jobs), sum(jobs.values()), 0.95)
    metrics["complete_p95_s"] = complete_ms / 1000 if complete_ms is not None else None
    return metrics


def add_arguments(parser: Any) -> None:
    parser.add_argument("--slo", type=str, default="", help="SLO TOML file: judged when Locust quits")
    parser.add_argument("--slo-profile", type=str, default="steady", help="which profile's SLOs to judge")


def judge_on_quit(environment: Any, **_: Any) -> None:
    """Sets the exit code to 1 when an SLO Locust measures failed; logs every SLO judged."""
    options = environment.parsed_options
    if options is None or not getattr(options, "slo", "") or environment.runner is None:
        return
    if isinstance(environment.runner, WorkerRunner):
        return  # the master judges the aggregated statistics
    overrides = load_slo_file(Path(options.slo))
    thresholds = [t for t in thresholds_for(options.slo_profile, overrides) if t.metric in LOCUST_MEASURES]
    results = evaluate(tuple(thresholds), locust_metrics(environment.stats))
    for result in results:
        logger.info(result.line)
    if any(result.status == "failed" for result in results):
        environment.process_exit_code = 1
