"""Stack providers, Jepsen's environment: where the service under test runs.

- `LocalStack` (local.py): RabbitMQ, PostgreSQL, migrations, API, relay and workers as child
  processes on free loopback ports, with handles for faults (kill, restart, pause).
- `TargetStack` (target.py): an existing deployment named by a target TOML file.
- `StackProvider` / `StackEndpoints` (base.py): what the rest of the harness relies on.

Nothing started here outlives the harness (processes.py: PDEATHSIG, process groups, one
long-lived spawner thread; local.py: atexit and signal handlers).
"""

from harness.stack.base import StackEndpoints, StackError, StackProvider

__all__ = ["StackEndpoints", "StackError", "StackProvider"]
