"""What the Toxiproxy-compatible proxy costs on a clean link (no toxics), direct vs through it.

The proxy (`harness proxy`) and the echo upstream each run in a process of their own; the
client is this test. Printed side by side, never asserted: speed depends on the machine.
- latency: round trips of a 16-byte message on one connection (median, p99), direct and
  proxied in alternating blocks, so load from elsewhere on the machine hits both alike;
- throughput: 64 KB messages echoed, on 1 connection and on 100 concurrent ones, best of
  ROUNDS alternating runs each.
A third column, when `socat` is installed, forwards the same link with socat (C, a process per
connection): the cost of one more process hop on this machine, which no user-space proxy beats,
so the proxy's share of direct reads against socat's share, not against 100%.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from chaos.toxiproxy_client import ProxySpec, ToxiproxyClient
from tests.proxy_upstreams import connect, round_trip_s

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(180)]

ROUND_TRIPS = 600
ROUNDS = 5
MESSAGE = 64 * 1024
ONE_CONN_MESSAGES = 600
CONCURRENT = 100
CONCURRENT_MESSAGES = 30


@dataclass(frozen=True)
class Ports:
    direct: int
    proxied: int
    socat: int | None


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"child exited before it was ready: {process.args}")
    return line.strip()


@pytest.fixture(scope="module")
def ports() -> Iterator[Ports]:
    echo = subprocess.Popen(
        [sys.executable, "-m", "tests.proxy_upstreams"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    proxy = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "proxy", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    socat: subprocess.Popen[bytes] | None = None
    try:
        echo_port = int(_first_line(echo))
        url = _first_line(proxy).rpartition(" ")[2]
        with ToxiproxyClient(url) as client:
            created = client.create_proxy(ProxySpec("bench", f"127.0.0.1:{echo_port}"))
        socat_port = _free_port() if shutil.which("socat") else None
        if socat_port is not None:
            listen = f"TCP-LISTEN:{socat_port},bind=127.0.0.1,fork,reuseaddr,backlog=512,nodelay"
            upstream = f"TCP:127.0.0.1:{echo_port},nodelay"
            socat = subprocess.Popen(["socat", "-b", str(MESSAGE), listen, upstream])
            _wait_listening(socat_port)
        yield Ports(direct=echo_port, proxied=created.listen_port, socat=socat_port)
    finally:
        proxy.terminate()
        if socat is not None:
            socat.terminate()
        assert echo.stdin is not None
        echo.stdin.close()
        for child in (proxy, echo, *([socat] if socat is not None else [])):
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"socat never listened on {port}")


def latency_samples_us(port: int) -> list[float]:
    with connect(port) as sock:
        for _ in range(100):
            round_trip_s(sock, b"x" * 16)
        return [round_trip_s(sock, b"x" * 16) * 1e6 for _ in range(ROUND_TRIPS)]


def median_and_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99)]


def one_connection_mb_s(port: int) -> float:
    payload = b"m" * MESSAGE
    with connect(port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        started = time.perf_counter()
        for _ in range(ONE_CONN_MESSAGES):
            round_trip_s(sock, payload)
        elapsed = time.perf_counter() - started
    return ONE_CONN_MESSAGES * MESSAGE / elapsed / 1e6


async def _echo_messages(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"m" * MESSAGE
    for _ in range(CONCURRENT_MESSAGES):
        writer.write(payload)
        await reader.readexactly(MESSAGE)
    writer.close()
    await writer.wait_closed()


async def _concurrent(port: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(_echo_messages(port) for _ in range(CONCURRENT)))
    return CONCURRENT * CONCURRENT_MESSAGES * MESSAGE / (time.perf_counter() - started) / 1e6


def concurrent_mb_s(port: int) -> float:
    return asyncio.run(_concurrent(port))


def test_proxy_overhead_side_by_side(ports: Ports, capsys: pytest.CaptureFixture[str]) -> None:
    columns = {"direct": ports.direct, "proxy": ports.proxied}
    if ports.socat is not None:
        columns["socat"] = ports.socat
    samples: dict[str, list[float]] = {name: [] for name in columns}
    for _ in range(ROUNDS):
        for name, port in columns.items():
            samples[name] += latency_samples_us(port)
    medians = {name: median_and_p99(values) for name, values in samples.items()}
    rows: list[tuple[str, dict[str, float], str]] = [
        ("round trip median (us)", {n: m[0] for n, m in medians.items()}, "+{:.0f} us"),
        ("round trip p99 (us)", {n: m[1] for n, m in medians.items()}, "+{:.0f} us"),
    ]
    for label, measure in (
        ("64 KB echo, 1 conn (MB/s)", one_connection_mb_s),
        (f"64 KB echo, {CONCURRENT} conns (MB/s)", concurrent_mb_s),
    ):
        runs = [{name: measure(port) for name, port in columns.items()} for _ in range(ROUNDS)]
        rows.append((label, {name: max(run[name] for run in runs) for name in columns}, "{:.0%}"))
    with capsys.disabled():
        print(f"\n{'clean link':<30}" + "".join(f"{name:>10}" for name in columns) + "  vs direct")
        for label, values, note in rows:
            direct = values["direct"]
            others = [
                f"{name} " + (note.format(v - direct) if "us" in note else note.format(v / direct))
                for name, v in values.items()
                if name != "direct"
            ]
            print(f"{label:<30}" + "".join(f"{v:>10.1f}" for v in values.values()) + "  " + ", ".join(others))
    assert all(value > 0 for _, values, _ in rows for value in values.values())
