"""A private RabbitMQ node run from the Debian install without its root wrapper.

Everything that identifies a node is its own: node name, ports, data, cookie and even epmd,
which we start ourselves on a free port (epmd normally daemonizes and would outlive us). With
RABBITMQ_ALLOW_INPUT set, `rabbitmq-server` execs erl, which execs beam.smp, so the beam is our
direct child and receives PDEATHSIG; `-noinput` keeps the Erlang shell off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import aio_pika
import httpx
import psutil

from harness.observe.rabbitmq import Management
from harness.stack.base import StackError
from harness.stack.ports import free_port, is_listening
from harness.stack.processes import ManagedProcess, run_checked
from harness.stack.readiness import http_ok, poll_until_ready

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
EPMD = Path("/usr/lib/erlang/bin/epmd")
LOOPBACK_ERL_ARGS = "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"


def epmd_process(port: int, log_dir: Path, env: dict[str, str] | None = None) -> ManagedProcess:
    """A private epmd on loopback: every node that registers with it (a cluster's) finds the others."""
    argv = [str(EPMD), "-port", str(port), "-address", "127.0.0.1"]
    return ManagedProcess("epmd", argv, log_dir=log_dir, env=env)


@dataclass(frozen=True)
class RabbitPorts:
    amqp: int
    management: int
    dist: int
    epmd: int
    ctl_dist: int

    @classmethod
    def allocate(cls) -> RabbitPorts:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())


class RabbitNode:
    """One RabbitMQ node with management, listening on loopback only, data under `base_dir`."""

    def __init__(
        self,
        base_dir: Path,
        log_dir: Path,
        ports: RabbitPorts | None = None,
        *,
        name: str = "rabbitmq",
        cookie: str | None = None,
        epmd: ManagedProcess | None = None,
        seed: str | None = None,
    ) -> None:
        """`cookie` and `epmd` are given when the node is one of a cluster (they are shared then);
        by default the node has its own of each. `seed` names the node a new node joins on its
        first boot (classic-config peer discovery). `name` names its process and log file."""
        self.seed = seed
        self.base_dir = base_dir
        self.log_dir = log_dir
        self.ports = ports or RabbitPorts.allocate()
        self.nodename = f"h{self.ports.amqp}@localhost"
        self._env = self._prepare(cookie)
        self.owns_epmd = epmd is None
        self.epmd = epmd or epmd_process(self.ports.epmd, log_dir, self._env)
        # Its working directory is its own: an Erlang VM that dies writes erl_crash.dump and
        # MnesiaCore files there, not into whatever directory the harness was started from.
        self.server = ManagedProcess(
            name,
            [str(RABBIT_BIN / "rabbitmq-server"), "-noinput"],
            log_dir=log_dir,
            env=self._env,
            cwd=base_dir,
        )

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports.amqp}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.ports.management}/"

    @property
    def management_api(self) -> str:
        """Base of the management HTTP API without credentials (use basic auth guest/guest)."""
        return f"http://127.0.0.1:{self.ports.management}/api"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "rabbit.pid"

    def _prepare(self, cookie_value: str | None) -> dict[str, str]:
        """Write cookie, config and plugins file; return the environment shared by server and CLI."""
        home = self.base_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(cookie_value or secrets.token_hex(16))
            cookie.chmod(0o400)
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.base_dir / "rabbitmq.conf").write_text(self._config())
        return self._environment(home)

    def _config(self) -> str:
        return "\n".join(
            [
                f"listeners.tcp.1 = 127.0.0.1:{self.ports.amqp}",
                "management.tcp.ip = 127.0.0.1",
                f"management.tcp.port = {self.ports.management}",
                "default_user = guest",
                "default_pass = guest",
                # Queue depths in the management API (read by the checker) trail by this much.
                "collect_statistics_interval = 500",
                "log.console = true",
                "log.console.level = info",
                "log.file = false",
                *self._discovery(),
                "",
            ]
        )

    def _discovery(self) -> list[str]:
        if self.seed is None:
            return []
        return [
            "cluster_formation.peer_discovery_backend = classic_config",
            f"cluster_formation.classic_config.nodes.1 = {self.seed}",
        ]

    def _environment(self, home: Path) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return inherited | {
            "PATH": f"{RABBIT_BIN}:/usr/lib/erlang/bin:{inherited.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "RABBITMQ_ALLOW_INPUT": "true",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.ports.amqp),
            "RABBITMQ_DIST_PORT": str(self.ports.dist),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.ports.ctl_dist),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.ports.ctl_dist),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": LOOPBACK_ERL_ARGS,
            "RABBITMQ_CTL_ERL_ARGS": LOOPBACK_ERL_ARGS,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.ports.epmd),
        }

    def start(self) -> None:
        """Start epmd (once) and the node; returns at once, see `wait_ready()`."""
        self.epmd.start()
        self.server.start()

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for a real AMQP connection, then for the management API; return seconds waited."""

        async def amqp() -> None:
            if not is_listening(self.ports.amqp):
                raise ConnectionRefusedError(f"127.0.0.1:{self.ports.amqp} refuses connections")
            connection = await aio_pika.connect(self.amqp_url, timeout=2)
            await connection.close()

        took = await poll_until_ready(
            f"RabbitMQ {self.nodename} (AMQP)",
            amqp,
            timeout=timeout,
            alive=lambda: self.server.is_running,
            explain=self.server.log_tail,
        )
        return took + await poll_until_ready(
            f"RabbitMQ {self.nodename} (management)",
            lambda: http_ok(f"{self.management_api}/overview", auth=("guest", "guest")),
            timeout=max(5.0, timeout - took),
            alive=lambda: self.server.is_running,
            explain=self.server.log_tail,
        )

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run `rabbitmqctl -n <node> ...` against this node with its cookie and private epmd."""
        argv = [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.nodename, *args]
        return run_checked(argv, env=self._env, timeout=timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """A clean stop via `rabbitmqctl stop`; falls back to SIGTERM/SIGKILL of the beam."""
        self.server.resume()
        if self.server.is_running:
            with contextlib.suppress(StackError):
                self.rabbitmqctl("stop", timeout=timeout)
        self.server.stop(timeout=15)
        self._kill_stray_beam()

    def quorum_registrations_saved(self) -> bool:
        """Every quorum queue's Ra server on this node is in Ra's directory on disk (`names.dets`).

        Measured on 3.10.8: a quorum queue whose registration is not saved yet (about 1 s after
        its declare) never gets a leader again after a kill -9 of its node.
        """
        quorum = self.base_dir / "mnesia" / self.nodename / "quorum" / self.nodename
        servers = [path.name for path in quorum.iterdir() if path.is_dir()] if quorum.is_dir() else []
        names = quorum / "names.dets"
        saved = names.read_bytes() if names.exists() else b""
        return all(server.encode() in saved for server in servers)

    def kill(self) -> None:
        """SIGKILL the beam and its group: a broker crash. epmd survives, as on a real host."""
        self.server.kill()

    def restart(self, timeout: float = 60.0) -> None:
        """Stop cleanly and start again on the same data directory and ports."""
        self.stop(timeout)
        self.start()

    def pause(self) -> None:
        """SIGSTOP the node: connections stay open but nothing answers."""
        self.server.pause()

    def resume(self) -> None:
        self.server.resume()

    def teardown(self, clean: bool = False) -> None:
        """Stop the node and its private epmd; nothing of this node keeps running.

        By default a SIGKILL: the data directory is thrown away next, and a clean shutdown of
        a 3.10 node costs about 6 s at every test session's end. `clean=True` sends SIGTERM,
        which a 3.10 beam also treats as an orderly stop.
        """
        if clean:
            self.server.stop(timeout=20)
        else:
            self.server.kill()
            self.server.stop(timeout=5)
        self._kill_stray_beam()
        if self.owns_epmd:
            self.epmd.stop(timeout=5)

    def _kill_stray_beam(self) -> None:
        """Kill a beam named in the pid file if it is still alive (should the exec chain ever fork)."""
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pid = int(self.pid_file.read_text().strip())
            proc = psutil.Process(pid)
            if proc.name().startswith("beam") and self.nodename in " ".join(proc.cmdline()):
                proc.send_signal(signal.SIGKILL)


SIMULATE_QUEUE = "ast.simulate.q"


@dataclass(frozen=True)
class QuorumStatus:
    """A quorum queue's Raft membership as the management API reports it."""

    queue: str
    leader: str
    members: tuple[str, ...]
    online: tuple[str, ...]


async def quorum_status(management_urls: str | list[str], queue: str, vhost: str = "/") -> QuorumStatus:
    """`members`, `online` and `leader` of a quorum queue, from the first node whose management
    API answers (a cluster's nodes each serve the whole cluster's view)."""
    urls = [management_urls] if isinstance(management_urls, str) else management_urls
    last: Exception | None = None
    for url in urls:
        try:
            async with Management(url, vhost=vhost, timeout_s=5) as management:
                row = await management.queue(queue)
        except httpx.HTTPError as exc:
            last = exc
            continue
        return QuorumStatus(
            queue=queue,
            leader=str(row.get("leader") or ""),
            members=tuple(sorted(row.get("members") or ())),
            online=tuple(sorted(row.get("online") or ())),
        )
    raise StackError(f"no management API answered for {queue}: {last!r}")


class RabbitCluster:
    """`size` private nodes on loopback with one Erlang cookie and one epmd, joined into a cluster.

    The nodes boot in parallel (booting dominates), the others naming the first as their seed
    (classic-config peer discovery), so they join it during their first boot. A node that booted
    alone all the same (the seed did not answer in time) is joined afterwards with `rabbitmqctl
    join_cluster` (`stop_app`, `join_cluster`, `start_app`; one at a time: two at once failed in
    mnesia). `timings` says how long each part took and how many needed rabbitmqctl.
    Quorum queues declared after that get every node as a member. The node list order is the
    order of `amqp_url`: the service tries them in turn.
    """

    def __init__(self, base_dir: Path, log_dir: Path, size: int = 3) -> None:
        if size < 2:
            raise StackError(f"a cluster needs at least two nodes, not {size}")
        cookie = secrets.token_hex(16)
        self.epmd = epmd_process(free_port(), log_dir)
        epmd_port = int(self.epmd.argv[2])
        ports = [replace(RabbitPorts.allocate(), epmd=epmd_port) for _ in range(size)]
        seed = f"h{ports[0].amqp}@localhost"
        self.nodes = [
            RabbitNode(
                base_dir / f"node{i}",
                log_dir,
                ports[i - 1],
                name=f"rabbitmq-{i}",
                cookie=cookie,
                epmd=self.epmd,
                seed=seed if i > 1 else None,
            )
            for i in range(1, size + 1)
        ]
        self.timings: dict[str, float] = {}

    @property
    def amqp_url(self) -> str:
        return ",".join(node.amqp_url for node in self.nodes)

    @property
    def management_url(self) -> str:
        return self.nodes[0].management_url

    @property
    def management_urls(self) -> list[str]:
        return [node.management_url for node in self.nodes]

    def start(self) -> None:
        """epmd, then every node at once; returns at once, see `wait_ready()`."""
        self.epmd.start()
        for node in self.nodes:
            node.server.start()

    async def wait_ready(self, timeout: float = 90.0) -> float:
        """Every node booted, the others joined to the first, all running as one cluster."""
        started = time.monotonic()
        await asyncio.gather(*(node.wait_ready(timeout) for node in self.nodes))
        self.timings["nodes_booted_s"] = round(time.monotonic() - started, 3)
        first = self.nodes[0]
        running = await self.running_nodes()
        for node in self.nodes[1:]:
            if node.nodename not in running:  # booted before the seed answered: join it now
                await asyncio.to_thread(self._join, node, first)
                self.timings.setdefault("joined_by_rabbitmqctl", 0)
                self.timings["joined_by_rabbitmqctl"] += 1
        self.timings["joined_s"] = round(time.monotonic() - started, 3)
        await poll_until_ready(
            "RabbitMQ cluster (every node running)",
            self._require_clustered,
            timeout=max(5.0, timeout - (time.monotonic() - started)),
        )
        # A node that joined while booting may leave feature flags off cluster-wide (once seen:
        # "Cannot declare a queue ... of type rabbit_quorum_queue ... feature flag is disabled").
        await asyncio.to_thread(first.rabbitmqctl, "enable_feature_flag", "all")
        return time.monotonic() - started

    @staticmethod
    def _join(node: RabbitNode, first: RabbitNode) -> None:
        node.rabbitmqctl("stop_app")
        node.rabbitmqctl("join_cluster", first.nodename)
        node.rabbitmqctl("start_app")

    async def running_nodes(self) -> set[str]:
        """The nodes the first reachable management API reports as running."""
        for node in self.nodes:
            try:
                async with httpx.AsyncClient(timeout=5, auth=("guest", "guest")) as client:
                    url = f"{node.management_api}/nodes"
                    response = await client.get(url, params={"columns": "name,running"})
                    response.raise_for_status()
            except httpx.HTTPError:
                continue
            return {row["name"] for row in response.json() if row.get("running")}
        return set()

    async def _clustered(self) -> bool:
        return await self.running_nodes() == {node.nodename for node in self.nodes}

    async def _require_clustered(self) -> None:
        if not await self._clustered():
            raise StackError(f"running nodes: {sorted(await self.running_nodes())}")

    def teardown(self) -> None:
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda node: node.teardown(), self.nodes))
        self.epmd.stop(timeout=5)
