"""What every stack provider offers: the endpoints of a deployment and a start/stop life cycle.

Providers are Jepsen's environment (db.clj): local processes, testcontainers, or an existing
deployment named by a target file. The harness only needs the endpoints; fault injection
reaches for the richer, provider-specific handles (e.g. `LocalStack.rabbit`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class StackError(Exception):
    """Root of every error raised while starting, probing or stopping a stack."""


class ReadinessTimeout(StackError):
    """A server did not answer its readiness probe within the allowed time."""


@dataclass(frozen=True)
class StackEndpoints:
    """How to reach one deployment of the service; what a target TOML file holds."""

    api_url: str
    postgres_dsn: str
    amqp_url: str
    management_url: str
    target_file: Path | None = None
    api_token: str = ""
    toxiproxy_url: str | None = None
    # Names of the proxies in front of each client's link (`<client>-<server>`), when proxied.
    toxiproxy_proxies: tuple[str, ...] = field(default_factory=tuple)
    faults_allowed: tuple[str, ...] = field(default_factory=tuple)
    # `[faults.commands]`: fault name -> the shell command that injects it on this deployment.
    fault_commands: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # Suites wipe tables and queues between tests; only a throwaway deployment may say yes.
    reset_allowed: bool = False

    def export_line(self) -> str:
        """The one shell line `harness up` prints so a user can reach this stack."""
        parts = [
            f"API_URL={self.api_url}",
            f"POSTGRES_URL={self.postgres_dsn}",
            f"RABBIT_URL={self.amqp_url}",
            f"RABBIT_MANAGEMENT_URL={self.management_url}",
        ]
        if self.target_file is not None:
            parts.append(f"HARNESS_TARGET={self.target_file}")
        return "export " + " ".join(parts)


class StackProvider(Protocol):
    """A deployment the harness can start, reach and stop.

    `stop()` must be idempotent and leave nothing running that `start()` created.
    Conformance is checked statically (mypy), where the pytest plugin assigns both providers.
    """

    @property
    def endpoints(self) -> StackEndpoints: ...

    @property
    def timings(self) -> dict[str, float]: ...

    def start(self) -> StackEndpoints: ...

    def stop(self) -> None: ...


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_target_toml(endpoints: StackEndpoints) -> str:
    """The target file format of CONTRACT.md, so a stack started here can be driven by `--target`."""
    lines = [
        "[api]",
        f"url = {_toml_str(endpoints.api_url)}",
        f"token = {_toml_str(endpoints.api_token)}",
        "[postgres]",
        f"dsn = {_toml_str(endpoints.postgres_dsn)}",
        "[rabbitmq]",
        f"amqp_url = {_toml_str(endpoints.amqp_url)}",
        f"management_url = {_toml_str(endpoints.management_url)}",
    ]
    if endpoints.toxiproxy_url:
        lines += ["[toxiproxy]", f"url = {_toml_str(endpoints.toxiproxy_url)}"]
        if endpoints.toxiproxy_proxies:
            names = ", ".join(_toml_str(name) for name in endpoints.toxiproxy_proxies)
            lines.append(f"proxies = [{names}]")
    allowed = ", ".join(_toml_str(name) for name in endpoints.faults_allowed)
    lines += ["[faults]", f"allowed = [{allowed}]"]
    if endpoints.fault_commands:
        lines.append("[faults.commands]")
        lines += [f"{_toml_str(name)} = {_toml_str(command)}" for name, command in endpoints.fault_commands]
    if endpoints.reset_allowed:
        lines += ["[harness]", "reset_allowed = true  # a throwaway stack: suites may wipe its state"]
    return "\n".join(lines) + "\n"


def load_target(path: Path) -> StackEndpoints:
    """Read a target TOML file (CONTRACT.md) into endpoints; unknown tables are ignored."""
    try:
        data = tomllib.loads(path.read_text())
        faults = data.get("faults", {})
        return StackEndpoints(
            api_url=str(data["api"]["url"]),
            api_token=str(data["api"].get("token", "")),
            postgres_dsn=str(data["postgres"]["dsn"]),
            amqp_url=str(data["rabbitmq"]["amqp_url"]),
            management_url=str(data["rabbitmq"]["management_url"]),
            target_file=path,
            toxiproxy_url=data.get("toxiproxy", {}).get("url"),
            toxiproxy_proxies=tuple(str(name) for name in data.get("toxiproxy", {}).get("proxies", [])),
            faults_allowed=tuple(str(name) for name in faults.get("allowed", [])),
            fault_commands=tuple((str(k), str(v)) for k, v in faults.get("commands", {}).items()),
            reset_allowed=bool(data.get("harness", {}).get("reset_allowed", False)),
        )
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise StackError(f"bad target file {path}: {exc}") from exc
