"""A job whose result PostgreSQL cannot store settles: FAILED, `RESULT_UNSTORABLE`, in the DLQ.

The real path: a repository with a file whose name is not UTF-8. Git keeps the name's bytes, the
worker's `os.walk` decodes them with surrogate escapes, and a file that does not parse is listed
in the result's `skippedFiles` under that name: a lone surrogate, which jsonb refuses. Before the
fix the worker took the refusal for a database outage, retried, gave the message back, and ran
the job again, forever (the task never settled). The name stays out of the task's error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from scenarios.e2e.helpers import dlq_task_ids, statuses, submit, wait_terminal
from scenarios.fixtures.repos import git, init_repo

pytestmark = pytest.mark.e2e

NON_UTF8_NAME = b"broken-\xff-name.py"
SETTLE_S = 60.0
DLQ_S = 15.0


@pytest.fixture(scope="module")
def repo_with_a_non_utf8_name(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = init_repo(tmp_path_factory.mktemp("non-utf8") / "repo")
    (path / "ok.py").write_text("def fine():\n    return 1\n")
    with open(os.path.join(os.fsencode(path), NON_UTF8_NAME), "wb") as broken:
        broken.write(b"def broken(:\n")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "--message", "a file name that is not UTF-8")
    return path


def test_a_result_naming_a_non_utf8_file_fails_terminally_into_the_dlq(
    api: httpx.Client, management_url: str, repo_with_a_non_utf8_name: Path
) -> None:
    payload = {"repoUrl": f"file://{repo_with_a_non_utf8_name}"}
    task_id = submit(api, payload, task_type="initialize_repository")

    task = wait_terminal(api, task_id, timeout=SETTLE_S)

    assert task["status"] == "FAILED", task
    assert task["error"]["code"] == "RESULT_UNSTORABLE"
    assert "broken" not in task["error"]["message"]
    assert task["result"] is None
    assert task["retryCount"] == 0
    assert statuses(api, task_id) == ["PENDING", "IN_PROGRESS", "FAILED"]
    deadline = time.monotonic() + DLQ_S  # the reject follows the FAILED commit by a moment
    while task_id not in dlq_task_ids(management_url):
        assert time.monotonic() < deadline, f"task {task_id} never reached ast.jobs.dlq"
        time.sleep(0.2)
