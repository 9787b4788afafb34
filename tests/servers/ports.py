"""Ports for servers the tests start in another process (gateways, PostgreSQL, Redis).

Binding port 0 and handing the number to a child races: until the child binds it, the
kernel may give the same port to any outgoing connection as its local end, since port 0
draws from the ephemeral range (CI lost a run to this). So these ports come from below
that range, where no outgoing connection lands, in a slice of it per xdist worker so two
workers never draw the same one.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_FIRST = 10_000
_SLICES = 16


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % _SLICES if worker.isdigit() else 0
    size = (_ephemeral_low() - _FIRST) // _SLICES
    low = _FIRST + index * size
    start = random.randrange(size)
    for step in range(size):
        port = low + (start + step) % size
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {low}..{low + size - 1}")
