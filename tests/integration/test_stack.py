"""The embedded stack provider against real RabbitMQ and PostgreSQL processes.

These tests own their servers (no session `stack` fixture): they kill and restart them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import aiormq
import asyncpg
import httpx
import psutil
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from harness.stack.local import TMP_PREFIX, LocalStack, sweep_stale_tmp_dirs
from harness.stack.processes import ManagedProcess
from harness.stack.rabbitmq import RabbitNode
from tests.harness_up import read_exports

pytestmark = pytest.mark.integration
QUORUM = {"x-queue-type": "quorum"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("servers")
    stack = LocalStack(run_dir, services=False, show_progress=False, own_thread=True)
    stack.start()
    yield stack
    stack.stop()


def _rabbit(stack: LocalStack) -> RabbitNode:
    assert stack.rabbit is not None
    return stack.rabbit


async def _publish_and_consume(amqp_url: str, body: bytes) -> bytes:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("harness.selftest", durable=True, arguments=QUORUM)
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
        return message.body


async def test_rabbitmq_publish_and_consume(servers: LocalStack) -> None:
    assert await _publish_and_consume(servers.endpoints.amqp_url, b"hello") == b"hello"


async def test_postgres_table_roundtrip(servers: LocalStack) -> None:
    connection = await asyncpg.connect(servers.endpoints.postgres_dsn)
    try:
        await connection.execute("create table if not exists selftest (id int primary key, note text)")
        await connection.execute("insert into selftest values (1, 'x') on conflict do nothing")
        assert await connection.fetchval("select note from selftest where id = 1") == "x"
    finally:
        await connection.close()


async def test_rabbitmq_kill_9_and_restart(servers: LocalStack) -> None:
    rabbit = _rabbit(servers)
    old_pid = rabbit.server.pid
    assert _wait_for(lambda: _quorum_queues_on_disk(rabbit)), "Ra never saved its directory"
    rabbit.kill()
    assert not rabbit.server.is_running
    assert rabbit.server.returncode == -signal.SIGKILL
    started = time.monotonic()
    rabbit.start()
    await rabbit.wait_ready()
    ready_s = time.monotonic() - started
    assert rabbit.server.pid != old_pid
    assert await _until_quorum_accepts(servers.endpoints.amqp_url) == b"after crash"
    accepts_s = time.monotonic() - started
    print(f"\nrabbitmq after kill -9: AMQP ready {ready_s:.2f}s, quorum queue accepts {accepts_s:.2f}s")


def _quorum_queues_on_disk(rabbit: RabbitNode) -> bool:
    """Every quorum queue's Ra server is in the Ra directory on disk (`names.dets`).

    Measured on 3.10.8: a quorum queue whose registration is not saved yet (about 1 s after its
    declare) never gets a leader again after a kill -9; not a harness fault, so wait for the save.
    """
    quorum = rabbit.base_dir / "mnesia" / rabbit.nodename / "quorum" / rabbit.nodename
    servers = [path.name for path in quorum.iterdir() if path.is_dir()] if quorum.is_dir() else []
    names = quorum / "names.dets"
    saved = names.read_bytes() if names.exists() else b""
    return all(server.encode() in saved for server in servers)


async def _until_quorum_accepts(amqp_url: str, timeout: float = 60.0) -> bytes:
    """After a crash the quorum queue nacks publishes until its Raft member has recovered."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await _publish_and_consume(amqp_url, b"after crash")
        except aiormq.exceptions.DeliveryError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_rabbitmq_clean_restart_keeps_persistent_messages(servers: LocalStack) -> None:
    rabbit = _rabbit(servers)
    connection = await aio_pika.connect(servers.endpoints.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("harness.restart", durable=True, arguments=QUORUM)
        message = aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=queue.name)
    assert _wait_for(lambda: _quorum_queues_on_disk(rabbit)), "Ra never saved its directory"
    started = time.monotonic()
    await asyncio.to_thread(rabbit.restart)
    await rabbit.wait_ready()
    print(f"\nrabbitmq clean restart (rabbitmqctl stop + start) to ready: {time.monotonic() - started:.2f}s")
    connection = await aio_pika.connect(servers.endpoints.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("harness.restart", durable=True, arguments=QUORUM)
        got = await _get_with_retry(queue)
        assert got.body == b"kept"
        await got.ack()


async def _get_with_retry(queue: AbstractQueue, timeout: float = 30.0) -> AbstractIncomingMessage:
    """A quorum queue answers basic.get only once its leader is elected again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await queue.get(timeout=5, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.2)
    raise AssertionError(f"nothing in {queue.name} after {timeout}s")


async def test_rabbitmq_pause_and_resume(servers: LocalStack) -> None:
    rabbit = _rabbit(servers)
    rabbit.pause()
    try:
        with pytest.raises((asyncio.TimeoutError, aiormq.exceptions.AMQPError, ConnectionError)):
            await asyncio.wait_for(aio_pika.connect(servers.endpoints.amqp_url, timeout=2), 3)
    finally:
        rabbit.resume()
    await rabbit.wait_ready(timeout=30)


async def test_postgres_fast_restart_keeps_data(servers: LocalStack) -> None:
    postgres = servers.postgres
    assert postgres is not None
    await test_postgres_table_roundtrip(servers)
    postgres.restart()
    await postgres.wait_ready()
    connection = await asyncpg.connect(servers.endpoints.postgres_dsn)
    try:
        assert await connection.fetchval("select count(*) from selftest") == 1
    finally:
        await connection.close()


async def test_postgres_immediate_stop_recovers(servers: LocalStack) -> None:
    postgres = servers.postgres
    assert postgres is not None
    postgres.kill()
    assert not postgres.server.is_running
    postgres.start()
    await postgres.wait_ready()
    connection = await asyncpg.connect(servers.endpoints.postgres_dsn)
    try:
        assert await connection.fetchval("select 1") == 1
    finally:
        await connection.close()


def _wait_for(predicate: object, timeout: float = 10.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_managed_process_supervision(tmp_path: Path) -> None:
    argv = ["sh", "-c", "echo up; exec sleep 300"]
    proc = ManagedProcess("sleeper", argv, log_dir=tmp_path, supervise=True)
    proc.restart_delay = 0.05
    proc.start()
    first = proc.pid
    assert _wait_for(lambda: proc.log_path.read_text().splitlines().count("up") == 1)
    proc.kill()
    assert _wait_for(lambda: proc.is_running and proc.pid != first), "a killed supervised process comes back"
    assert proc.restart_count == 1
    proc.pause()
    assert _wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED)
    proc.resume()
    second = proc.pid
    assert _wait_for(lambda: proc.log_path.read_text().splitlines().count("up") == 2)
    assert proc.stop(timeout=5) == -signal.SIGTERM
    time.sleep(0.3)
    assert not proc.is_running, "stop() is deliberate: no restart"
    assert proc.pid == second
    assert proc.log_path.read_text().splitlines().count("up") == 2


def test_managed_process_unexpected_exit_restarts(tmp_path: Path) -> None:
    proc = ManagedProcess("crasher", ["sh", "-c", "sleep 0.2; exit 3"], log_dir=tmp_path, supervise=True)
    proc.restart_delay = 0.05
    proc.start()
    assert _wait_for(lambda: proc.restart_count >= 2)
    proc.stop(timeout=5)
    count = proc.restart_count
    time.sleep(0.5)
    assert proc.restart_count == count


def test_unsupervised_process_stays_dead_and_kill_takes_the_group(tmp_path: Path) -> None:
    proc = ManagedProcess("group", ["sh", "-c", "sleep 300 & sleep 300"], log_dir=tmp_path)
    proc.start()
    assert _wait_for(lambda: len(psutil.Process(proc.pid).children()) == 2)
    children = psutil.Process(proc.pid).children()
    proc.kill()
    assert _wait_for(lambda: not any(_alive(child) for child in children))
    assert not proc.is_running


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _leftovers(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line mentions `marker`."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline:
            found.append(f"{proc.pid}: {cmdline[:160]}")
    return found


def test_stop_leaves_nothing_running(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, services=False, show_progress=False, own_thread=True)
    stack.start()
    rabbit, postgres = stack.rabbit, stack.postgres
    assert rabbit is not None
    assert postgres is not None
    assert stack.tmp_dir is not None
    markers = [str(stack.tmp_dir), f"-port {rabbit.ports.epmd}", rabbit.nodename]
    pids = [p.pid for p in stack.processes() if p.pid is not None]
    assert all(_leftovers(marker) for marker in markers[:2])
    print(f"\nservers-only stack ready: {stack.timings}")
    stack.stop()
    stack.stop()
    assert [line for marker in markers for line in _leftovers(marker)] == []
    assert not [pid for pid in pids if psutil.pid_exists(pid) and _alive(psutil.Process(pid))]
    assert not Path(markers[0]).exists()


def test_bare_rabbitmq_start_to_amqp_ready(tmp_path: Path) -> None:
    node = RabbitNode(tmp_path / "rabbit", tmp_path / "logs")
    started = time.monotonic()
    node.start()
    try:
        from harness.stack.readiness import run_sync

        run_sync(node.wait_ready(), own_thread=True)
        print(f"\nbare rabbitmq start to AMQP+management ready: {time.monotonic() - started:.2f}s")
    finally:
        node.teardown()
    assert _leftovers(node.nodename) == []


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _harness_up(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    harness = Path(sys.executable).parent / "harness"
    argv = [str(harness), "up", "--run-dir", str(run_dir), *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_harness_up_children_die_with_it(tmp_path: Path, stop_signal: signal.Signals) -> None:
    """SIGTERM: an orderly stop. SIGKILL: no handler runs, PDEATHSIG takes the children down."""
    proc = _harness_up(tmp_path, "--no-services")
    try:
        exports = read_exports(proc, timeout=120)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3, "epmd, beam and postgres at least"
        seen_dirs = _tmp_dirs_in(children)
        proc.send_signal(stop_signal)
        assert proc.wait(60) == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
    finally:
        _reap(proc)
    assert _wait_for(lambda: not any(_alive(child) for child in children)), exports
    tmp_dirs = [Path(d) for d in seen_dirs]
    assert tmp_dirs
    if stop_signal == signal.SIGKILL:
        assert set(tmp_dirs) <= set(sweep_stale_tmp_dirs()), "the next stack removes what a killed one left"
    assert not any(d.exists() for d in tmp_dirs)


def _tmp_dirs_in(processes: list[psutil.Process]) -> set[str]:
    """The stack temp dirs named on the command lines seen while the stack ran."""
    found = set()
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            found.update(re.findall(rf"/\S*?{TMP_PREFIX}[^/\s]+", " ".join(proc.cmdline())))
    return found


def test_harness_up_prints_export_line_and_stops_on_sigint(tmp_path: Path) -> None:
    argv = _up_service_args()
    proc = _harness_up(tmp_path, *argv)
    try:
        exports = read_exports(proc, timeout=120)
        assert exports["RABBIT_URL"].startswith("amqp://guest:guest@127.0.0.1:")
        assert exports["POSTGRES_URL"].startswith("postgresql://ast@127.0.0.1:")
        assert Path(exports["HARNESS_TARGET"]).read_text().startswith("[api]")
        postgres = f" port={exports['POSTGRES_URL'].rsplit(':', 1)[1].split('/')[0]} "  # `-c port=N -c ...`
        assert _leftovers(postgres), "PostgreSQL is found by its port while it runs"
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert len(tree) >= 3, "epmd, beam and postgres at least"
        if "--no-services" not in argv:
            assert httpx.get(f"{exports['API_URL']}/ready", timeout=5).status_code == 200
            service_pids = _service_pids(proc.pid)
            assert len(service_pids) == 4, "api, relay and two workers"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        _reap(proc)
    assert _leftovers(postgres) == []
    assert _wait_for(lambda: not any(_alive(child) for child in tree)), [c.pid for c in tree if _alive(c)]
    if "--no-services" not in argv:
        assert not [pid for pid in service_pids if psutil.pid_exists(pid) and _alive(psutil.Process(pid))]


def _service_pids(parent: int) -> list[int]:
    children = psutil.Process(parent).children()
    commands = ("ast-api", "ast-relay", "ast-worker")
    return [c.pid for c in children if any(Path(part).name in commands for part in c.cmdline()[:2])]


def _up_service_args() -> list[str]:
    """Services on, unless HARNESS_UP_SERVICES=0 (to test the harness while the service is broken)."""
    return ["--no-services"] if os.environ.get("HARNESS_UP_SERVICES") == "0" else ["--workers", "2"]
