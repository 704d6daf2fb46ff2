"""Stack providers, Jepsen's environment: where the service under test runs.

- `LocalStack` (local.py): RabbitMQ, PostgreSQL, migrations, API, relay and workers as child
  processes on free loopback ports, with handles for faults (kill, restart, pause).
- `DockerStack` (docker.py, `--provider docker`): the same, but RabbitMQ and PostgreSQL in
  containers (testcontainers); both share the service part, `ServiceStack` (services.py), and
  differ only in their `Servers` (servers.py).
- `make_provider` (factory.py): `--target` wins, else the provider named `local` or `docker`.
- `TargetStack` (target.py): an existing deployment named by a target TOML file.
- `StackProvider` / `StackEndpoints` (base.py): what the rest of the harness relies on.

Nothing started here outlives the harness (processes.py: PDEATHSIG, process groups, one
long-lived spawner thread; services.py: atexit and signal handlers; docker.py: Ryuk).
"""

from harness.stack.base import StackEndpoints, StackError, StackProvider

__all__ = ["StackEndpoints", "StackError", "StackProvider"]
