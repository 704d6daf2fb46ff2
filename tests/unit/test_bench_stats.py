"""The benchmark's arithmetic (bench/stats.py): percentiles, ratios, a row's summary, CPU shares.

The benchmark itself (`python -m bench`) runs for minutes on a whole stack and is not in the suite;
its pure parts are, so a wrong percentile or a lost job never reaches a published table.
"""

from __future__ import annotations

import pytest

from bench.stats import BenchError, Submit, cpu_percent, mean_row, percentile, ratio, summarize

pytestmark = pytest.mark.unit


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert percentile([3.0, 1.0, 2.0], 50) == 2  # order of the input does not matter


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_refuses_out_of_range(q: float) -> None:
    with pytest.raises(BenchError):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(BenchError):
        percentile([], 50)


def test_ratio_is_none_when_it_cannot_be_told() -> None:
    assert ratio(191, 812) == pytest.approx(0.2352, abs=1e-4)
    assert ratio(1, 0) is None
    assert ratio(None, 2) is None
    assert ratio(2, None) is None


def test_summarize_measures_from_first_submit_to_last_completion() -> None:
    submits = [Submit("a", 100.0, 100.1), Submit("b", 100.5, 100.7), Submit("c", 101.0, 101.2)]
    done = {"a": 100.3, "b": 101.5, "c": 102.0}
    row = summarize("x", submits, done, {"api": 50.0}, cpu_s=0.3)
    assert row.jobs == row.completed == 3
    assert row.wall_s == pytest.approx(2.0)
    assert row.jobs_per_s == pytest.approx(1.5)
    assert row.done_p50_ms == pytest.approx(1000.0)  # 300, 1000, 1000 ms
    assert row.post_p50_ms == pytest.approx(200.0)  # 100, 200, 200 ms
    assert row.submit_per_s == pytest.approx(3 / 1.2)
    assert row.cpu_ms_per_job == pytest.approx(100.0)
    assert row.cpu == {"api": 50.0}


def test_summarize_refuses_a_row_with_a_job_not_completed() -> None:
    submits = [Submit("a", 1.0, 1.1), Submit("b", 1.0, 1.1)]
    with pytest.raises(BenchError, match="1 of 2 jobs not COMPLETED"):
        summarize("x", submits, {"a": 2.0})


def test_cpu_percent_counts_new_processes_from_zero_and_ignores_resets() -> None:
    before = {1: 10.0, 2: 5.0}
    after = {1: 11.0, 2: 5.5, 3: 0.5}  # 3 started inside the window
    assert cpu_percent(before, after, 2.0) == pytest.approx(100.0)  # 2 CPU s over 2 s
    assert cpu_percent({1: 10.0}, {1: 1.0}, 1.0) == 0  # a reused pid does not go negative
    assert cpu_percent({}, {}, 0.0) == 0


def test_mean_row_sums_jobs_and_averages_the_rest() -> None:
    one = summarize("x", [Submit("a", 0.0, 0.1)], {"a": 1.0}, {"api": 10.0}, cpu_s=0.01)
    two = summarize("x", [Submit("b", 0.0, 0.3)], {"b": 0.5}, {"api": 30.0, "relay": 4.0}, cpu_s=0.03)
    row = mean_row([one, two])
    assert row.jobs == row.completed == 2
    assert row.jobs_per_s == pytest.approx(1.5)  # 1/s and 2/s
    assert row.post_p50_ms == pytest.approx(200.0)
    assert row.cpu == {"api": 20.0, "relay": 2.0}  # a group missing from a round counts 0 there
    assert row.cpu_ms_per_job == pytest.approx(20.0)
    assert row.rounds_jobs_per_s == pytest.approx([1.0, 2.0])
    with pytest.raises(BenchError):
        mean_row([])
