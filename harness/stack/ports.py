"""Free loopback ports for the embedded stack.

The kernel picks a free port when we bind to port 0; we release it at once and hand the number
to a child process. A port handed out is remembered for the life of this process, so two
servers of one stack never receive the same number even before either has bound it.
"""

from __future__ import annotations

import socket
import threading

_lock = threading.Lock()
_handed_out: set[int] = set()


def _probe_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port(host: str = "127.0.0.1") -> int:
    """Return a loopback port that is free now and not yet handed out by this process.

    There is a short window in which another program may take it; the servers we start bind
    within a second, which has been good enough for test stacks.
    """
    with _lock:
        for _ in range(100):
            port = _probe_free_port(host)
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free loopback port found after 100 tries")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return `count` distinct free loopback ports."""
    return [free_port(host) for _ in range(count)]


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
