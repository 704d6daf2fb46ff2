"""A PostgreSQL of a test module's own, migrated as `ast-migrate` does, for tests of the service's
SQL that need no RabbitMQ and no service process.

It lives in a directory of its own under the system's temp dir: pytest's tmp dirs are closed to
the postgres user the server runs as.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.stack.postgres import PostgresCluster
from harness.stack.readiness import run_sync
from service.db.migrate import apply_migrations


@contextmanager
def migrated_postgres(prefix: str) -> Iterator[PostgresCluster]:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = PostgresCluster(base / "postgres", base)
    cluster.start()
    try:
        run_sync(cluster.wait_ready(), own_thread=True)
        run_sync(apply_migrations(cluster.dsn), own_thread=True)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
