"""The run record: the typed, versioned files of one run directory, with one writer and one reader.

Who writes what: the client and the nemesis write histories; the checks of the pytest plugin,
drills and load runs write checks and snapshots; the sampler writes samples; the gate and
`harness check` write results. The report reads all of it through `RunReader` and nothing else.
"""

from harness.record.layout import RUN_DIR_ENV, SUITE_ENV, RunLayout
from harness.record.reader import RecordError, RunReader
from harness.record.records import SCHEMA_VERSION
from harness.record.writer import RunWriter, new_run_dir, point_latest, resolve_run_dir

__all__ = [
    "RUN_DIR_ENV",
    "SCHEMA_VERSION",
    "SUITE_ENV",
    "RecordError",
    "RunLayout",
    "RunReader",
    "RunWriter",
    "new_run_dir",
    "point_latest",
    "resolve_run_dir",
]
