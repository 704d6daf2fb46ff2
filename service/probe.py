"""`python -m service.probe [URL]`: a container's health check, with nothing but the standard library.

Exit 0 when URL (default `AST_PROBE_URL`, else the API's /ready on 127.0.0.1:8080) answers 200
within PROBE_TIMEOUT_S, else 1 with one line saying why. The image's HEALTHCHECK runs it; a
worker's container points it at its own /ready (`http://127.0.0.1:9100/ready`).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/ready"
PROBE_TIMEOUT_S = 3.0


def probe(url: str) -> str | None:
    """None when `url` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as answer:  # noqa: S310 - our own URL
            return None if answer.status == 200 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"{type(error).__name__}: {error}"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("AST_PROBE_URL", DEFAULT_URL)
    problem = probe(url)
    if problem is None:
        return 0
    print(f"{url}: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
