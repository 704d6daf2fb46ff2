"""The Celery row: its own venv (made here, from PyPI), a prefork ×2 worker, and the driver."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx

from bench.stats import BenchError, Submit
from harness.observe.rabbitmq import vhost_of

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-venv"
SIDE = Path(__file__).resolve().parent / "celery_side"
REQUIREMENTS = ("celery>=5.5,<6", "psycopg[binary]>=3.1")
QUEUE = "bench.celery.q"


def ensure_venv() -> str:
    """Make `.bench-venv` with Celery and psycopg unless it already has them; Celery's version."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import celery, psycopg; print(celery.__version__)"]
    if python.exists():
        probe = subprocess.run(check, capture_output=True, text=True)
        if probe.returncode == 0:
            return probe.stdout.strip()
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv:
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *REQUIREMENTS], check=True)
    else:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    return subprocess.run(check, capture_output=True, text=True, check=True).stdout.strip()


def celery_env(amqp_url: str, dsn: str) -> dict[str, str]:
    return dict(os.environ) | {"BENCH_AMQP_URL": amqp_url, "BENCH_DSN": dsn, "PYTHONPATH": str(SIDE)}


class CeleryWorker:
    """`celery worker --pool prefork --concurrency 2` on the bench queue, until `stop()`."""

    def __init__(self, amqp_url: str, dsn: str, management_url: str, log: Path, concurrency: int = 2) -> None:
        self.env = celery_env(amqp_url, dsn)
        self.management_url = management_url
        self.vhost = vhost_of(amqp_url)
        self.log = log
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            str(VENV / "bin" / "celery"), "-A", "benchjobs", "worker", "--pool", "prefork",
            "--concurrency", str(self.concurrency), "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", QUEUE,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=SIDE, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        asyncio.run(self._wait_consuming(60))

    async def _wait_consuming(self, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(self.management_url)
        user, password = parts.username or "guest", parts.password or "guest"
        auth = (urllib.parse.unquote(user), urllib.parse.unquote(password))
        base = f"{parts.scheme}://{parts.hostname}:{parts.port}"
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=base, auth=auth, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise BenchError(f"the Celery worker exited at start; see {self.log}")
                answer = await client.get(f"/api/queues/{urllib.parse.quote(self.vhost, safe='')}/{QUEUE}")
                if answer.status_code == 200 and answer.json().get("consumers", 0) >= 1:
                    kind = answer.json().get("type")
                    if kind != "quorum":
                        raise BenchError(f"{QUEUE} is a {kind} queue, not a quorum queue")
                    return
                await asyncio.sleep(0.5)
        raise BenchError(f"the Celery worker did not consume within {timeout_s:.0f}s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(5)


def start_driver(
    jobs: int, concurrency: int, amqp_url: str, dsn: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the driver (in the Celery venv); `finish_driver` waits for it and reads its records."""
    out = Path(tempfile.mkstemp(prefix="bench-celery-", suffix=".json")[1])
    command = [str(VENV / "bin" / "python"), str(SIDE / "driver.py"), str(jobs), str(concurrency), str(out)]
    process = subprocess.Popen(command, cwd=SIDE, env=celery_env(amqp_url, dsn), stdout=subprocess.DEVNULL)
    return process, out


def finish_driver(process: subprocess.Popen[bytes], out: Path) -> tuple[list[Submit], float]:
    """Every submit of the driver, and the CPU seconds it used (it reports them itself)."""
    if process.wait() != 0:
        raise BenchError(f"the Celery driver exited {process.returncode}")
    try:
        written = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    submits = [Submit(str(task_id), float(start), float(end)) for task_id, start, end in written["records"]]
    return submits, float(written["cpu_s"])
