"""What the Toxiproxy-compatible proxy costs on a clean link (no toxics), direct vs through it.

The proxy (`harness proxy`) and the echo upstream each run in a process of their own; the
client is this test. Printed side by side, never asserted: speed depends on the machine.
- latency: round trips of a 16-byte message on one connection (median, p99), direct and
  proxied in alternating blocks, so load from elsewhere on the machine hits both alike;
- throughput: 64 KB messages echoed, on 1 connection and on 100 concurrent ones, best of
  ROUNDS alternating runs each.
"""

from __future__ import annotations

import asyncio
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
    try:
        echo_port = int(_first_line(echo))
        url = _first_line(proxy).rpartition(" ")[2]
        with ToxiproxyClient(url) as client:
            created = client.create_proxy(ProxySpec("bench", f"127.0.0.1:{echo_port}"))
        yield Ports(direct=echo_port, proxied=created.listen_port)
    finally:
        proxy.terminate()
        assert echo.stdin is not None
        echo.stdin.close()
        for child in (proxy, echo):
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


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
    direct_samples: list[float] = []
    proxied_samples: list[float] = []
    for _ in range(ROUNDS):
        direct_samples += latency_samples_us(ports.direct)
        proxied_samples += latency_samples_us(ports.proxied)
    direct_median, direct_p99 = median_and_p99(direct_samples)
    proxied_median, proxied_p99 = median_and_p99(proxied_samples)
    rows = [
        (
            "round trip median (us)",
            direct_median,
            proxied_median,
            f"+{proxied_median - direct_median:.0f} us",
        ),
        ("round trip p99 (us)", direct_p99, proxied_p99, f"+{proxied_p99 - direct_p99:.0f} us"),
    ]
    for label, measure in (
        ("64 KB echo, 1 conn (MB/s)", one_connection_mb_s),
        (f"64 KB echo, {CONCURRENT} conns (MB/s)", concurrent_mb_s),
    ):
        runs = [(measure(ports.direct), measure(ports.proxied)) for _ in range(ROUNDS)]
        direct, proxied = max(run[0] for run in runs), max(run[1] for run in runs)
        rows.append((label, direct, proxied, f"{proxied / direct:.0%} of direct"))
    with capsys.disabled():
        print(f"\n{'clean link':<30} {'direct':>10} {'proxied':>10}  through the proxy")
        for label, direct, proxied, note in rows:
            print(f"{label:<30} {direct:>10.1f} {proxied:>10.1f}  {note}")
    assert all(value > 0 for _, direct, proxied, _ in rows for value in (direct, proxied))
