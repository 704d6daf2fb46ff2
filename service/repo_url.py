"""Which repository URLs and refs a job may clone. Placeholder rules; see issue 4 for the full policy."""

from __future__ import annotations

import os

_ALLOWED_PREFIXES = ("https://", "ssh://")


def local_repos_allowed() -> bool:
    return os.environ.get("ALLOW_LOCAL_REPOS", "").strip().lower() in {"1", "true", "yes", "on"}


def validate_repo_url(url: str) -> str:
    if url.startswith("-"):
        raise ValueError("repoUrl must not start with '-'")
    if url.startswith(_ALLOWED_PREFIXES):
        return url
    if url.startswith("git@") and ":" in url:
        return url
    if (url.startswith("file://") or url.startswith("/")) and local_repos_allowed():
        return url
    raise ValueError("repoUrl must be https://, ssh:// or git@host:path")


def validate_ref(ref: str) -> str:
    if ref.startswith("-") or any(ch.isspace() for ch in ref) or ".." in ref:
        raise ValueError("ref is not a safe git ref")
    return ref
