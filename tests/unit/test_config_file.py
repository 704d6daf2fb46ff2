"""AST_CONFIG: a TOML file of the same settings; the environment wins; one line names a bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings

pytestmark = pytest.mark.unit


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_sets_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'worker_concurrency = 3\nRABBIT_PREFETCH = 5\napi_tokens = "a,b"\n')
    monkeypatch.setenv("AST_CONFIG", str(path))
    monkeypatch.setenv("RABBIT_PREFETCH", "7")
    settings = Settings()
    assert (settings.worker_concurrency, settings.rabbit_prefetch, settings.api_tokens) == (3, 7, ["a", "b"])


def start_with(config: str) -> subprocess.CompletedProcess[str]:
    """What an entry point does at start, in a process of its own, with AST_CONFIG set."""
    code = "from service.config import settings_or_exit; settings_or_exit()"
    env = {"AST_CONFIG": config, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("worker_concurrency = 400\n", "invalid configuration: WORKER_CONCURRENCY: Input should be less"),
        ('postgres_url = "mysql://x"\n', "invalid configuration: POSTGRES_URL: Value error, must be a"),
        ("wrker_concurrency = 4\n", "unknown setting WRKER_CONCURRENCY"),
        ("x = [\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_stops_with_one_line(tmp_path: Path, text: str, line: str) -> None:
    started = start_with(str(write(tmp_path, text)))
    assert started.returncode == 2
    assert len(started.stderr.splitlines()) == 1, started.stderr
    assert line in started.stderr


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    started = start_with(str(tmp_path / "absent.toml"))
    assert (started.returncode, started.stderr.strip()) == (
        2, f"invalid configuration: AST_CONFIG: no such file: {tmp_path / 'absent.toml'}"
    )


def test_an_unknown_trace_exporter_stops_with_one_line() -> None:
    code = "from service.tracing import tracing_or_exit; tracing_or_exit('api')"
    env = {"OTEL_TRACES_EXPORTER": "zipkin", "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-c", code]
    started = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert (started.returncode, started.stderr.strip()) == (
        2, "invalid configuration: OTEL_TRACES_EXPORTER: unknown exporter 'zipkin' (console, otlp or none)"
    )
