"""A loopback port for a test server of this host (or for a probe that must find nothing there)."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on when asked; a server started on it retries on the rare
    race with another process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
