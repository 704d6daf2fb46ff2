"""A content-addressed artifact store: a graph is written once, named by its sha256 digest.

Content addressing makes a retried or duplicated job harmless: the same graph gives the same
bytes, the same name and the same file, so a second write changes nothing. Writes go through a
temporary file and an atomic rename, so a worker killed mid-write never leaves a half artifact
under a real name. Reads look up a digest inside the store only (never a path taken from a
task result) and check the bytes against it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.graph.model import RepositoryGraph

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX = ".json.gz"


class ArtifactNotFound(LookupError):
    """No artifact with that digest (never written, or removed since)."""


class ArtifactCorrupt(ValueError):
    """The stored bytes no longer match their digest, or are not a graph."""


@dataclass(frozen=True, slots=True)
class ArtifactPointer:
    """What a task result keeps: where the artifact is and what its bytes hash to."""

    path: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise ArtifactNotFound("not a sha256 digest")
        return self.root / digest[:2] / f"{digest}{_SUFFIX}"

    def write_graph(self, graph: RepositoryGraph) -> ArtifactPointer:
        """Raises OSError on storage trouble (the caller treats that as retryable)."""
        payload = json.dumps(graph.to_json(), sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.sha256(payload).hexdigest()
        target = self.path_for(digest)
        if not target.exists():
            _write_atomically(target, gzip.compress(payload, compresslevel=6, mtime=0))
        return ArtifactPointer(str(target), digest, len(payload))

    def read_graph(self, digest: str) -> RepositoryGraph:
        target = self.path_for(digest)
        try:
            compressed = target.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"artifact {digest} is not in the store") from None
        try:
            payload = gzip.decompress(compressed)
        except (OSError, EOFError) as error:
            raise ArtifactCorrupt(f"artifact {digest} is not readable: {error}") from None
        if hashlib.sha256(payload).hexdigest() != digest:
            raise ArtifactCorrupt(f"artifact {digest} does not match its digest")
        try:
            return RepositoryGraph.from_json(json.loads(payload))
        except (ValueError, KeyError, TypeError) as error:
            raise ArtifactCorrupt(f"artifact {digest} is not a graph: {error}") from None


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
