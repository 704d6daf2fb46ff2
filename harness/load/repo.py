"""A small local git repository for the `initialize_repository` jobs of a load run on the embedded
stack (which runs with ALLOW_LOCAL_REPOS=1 and reads it from the same disk)."""

from __future__ import annotations

import subprocess
from pathlib import Path

FILES = {
    "app.py": "from util import helper\n\n\ndef main():\n    return helper(2)\n",
    "util.py": "RATE = 3\n\n\ndef helper(x):\n    return x * RATE\n",
    "web/index.ts": "export function greet(name: string): string {\n  return `hi ${name}`;\n}\n",
}
CHANGED_FILES = ("util.py",)
_IDENTITY = {
    "GIT_AUTHOR_NAME": "load",
    "GIT_AUTHOR_EMAIL": "load@example.invalid",
    "GIT_COMMITTER_NAME": "load",
    "GIT_COMMITTER_EMAIL": "load@example.invalid",
}


def build_load_repo(path: Path) -> Path:
    """`path` as a one-commit repository of FILES; returns its absolute path."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(path), **_IDENTITY}
    for args in (["init", "--quiet", "-b", "main"], ["add", "."], ["commit", "--quiet", "-m", "load"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True, timeout=30)
    return path.resolve()
