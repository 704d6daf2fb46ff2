"""How fast the graph is built and queried on a generated 1,000-file repository.

Numbers are recorded (pytest-benchmark's table and `extra_info`: files/s, symbols/s, peak
RSS), never asserted: speed depends on the machine, correctness is the unit tests' job.
"""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from scenarios.fixtures.repos import LargeRepo, generate_large_repo, python_module, script_module
from service.graph.builder import build_graph, link, list_source_files, parse_files
from service.graph.impact import ImpactIndex
from service.worker.jobs.repository import initialize_repository

pytestmark = pytest.mark.benchmark

FILES = 1000


@pytest.fixture(scope="module")
def large_repo(tmp_path_factory: pytest.TempPathFactory) -> LargeRepo:
    return generate_large_repo(tmp_path_factory.mktemp("bench") / "large", files=FILES)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rates(benchmark: BenchmarkFixture, files: int, symbols: int) -> None:
    assert benchmark.stats is not None
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        files=files,
        symbols=symbols,
        files_per_second=round(files / mean, 1),
        symbols_per_second=round(symbols / mean, 1),
        peak_rss_mib=round(_peak_rss_mib(), 1),
    )


def test_parse_throughput(benchmark: BenchmarkFixture, large_repo: LargeRepo) -> None:
    files = list_source_files(large_repo.path)
    results = benchmark.pedantic(parse_files, args=(large_repo.path, files), rounds=3, iterations=1)
    assert len(results) == large_repo.files
    _rates(benchmark, large_repo.files, large_repo.symbols)


def test_build_graph_throughput(benchmark: BenchmarkFixture, large_repo: LargeRepo) -> None:
    """Parsing plus linking: the CPU part of the repository job."""
    graph = benchmark.pedantic(build_graph, args=(large_repo.path,), rounds=3, iterations=1)
    assert graph.counts()["symbols"] == large_repo.symbols
    _rates(benchmark, large_repo.files, large_repo.symbols)


def test_link_time(benchmark: BenchmarkFixture, large_repo: LargeRepo) -> None:
    parsed = parse_files(large_repo.path, list_source_files(large_repo.path))
    graph = benchmark.pedantic(link, args=(parsed,), rounds=3, iterations=1)
    assert graph.counts()["symbolEdges"] == large_repo.symbol_edges


@pytest.mark.parametrize("changed", [python_module(0), script_module(499), python_module(250)])
def test_impact_query_time(benchmark: BenchmarkFixture, large_repo: LargeRepo, changed: str) -> None:
    """module 0 reaches every module of its language (the worst case); 499 is a leaf."""
    index = ImpactIndex(build_graph(large_repo.path))
    report = benchmark(index.query, [changed])
    benchmark.extra_info.update(reached_files=len(report.files), reached_symbols=len(report.symbols))
    assert report.files[0].id == changed


def test_repository_job_on_the_large_repository(
    benchmark: BenchmarkFixture, large_repo: LargeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole job (clone, parse, link, store) through a minimal TaskContext."""
    monkeypatch.setenv("ALLOW_LOCAL_REPOS", "1")

    class Context:
        task_id, task_type, attempt, retry_count, resume_data = uuid4(), "initialize_repository", 1, 0, None
        payload: dict[str, Any] = {"repoUrl": f"file://{large_repo.path}"}
        temp_dir, artifacts_dir = tmp_path / "tmp", tmp_path / "artifacts"

        async def update(self, *, progress: int | None = None, state: str | None = None) -> None:
            return None

        async def fetch_result(self, task_id: object) -> None:
            return None

    result = benchmark.pedantic(lambda: asyncio.run(initialize_repository(Context())), rounds=1, iterations=1)
    assert result["counts"]["files"] == large_repo.files
    _rates(benchmark, large_repo.files, large_repo.symbols)
