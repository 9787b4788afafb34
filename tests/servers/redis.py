"""Redis from Debian's ``redis-server`` package, one server per test session.

``redis_server`` starts ``redis-server`` on a free loopback port (no persistence, its
files in a temp dir) and stops it at the end of the session; ``redis_url`` is that
server emptied (``FLUSHALL``) for one test. ``RedisServer`` alone gives a test a server
of its own to kill and start again. Not installed: the tests skip, or fail under
``CI=true`` (``./dev test`` installs the package as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.ports import free_port


def _command(port: int, *words: str) -> bytes:
    """One inline command, its first reply line (no client library: the fixture checks
    the server, not redis-py)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall((" ".join(words) + "\r\n").encode())
        return s.recv(256)


class RedisServer:
    """A throwaway server: :meth:`start`, :meth:`kill` (SIGKILL), :meth:`stop`."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            reason = "redis-server is not installed: apt-get install redis-server"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason} (CI installs it with ./dev test as root)")
            pytest.skip(reason)
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="polyroute-redis-"))
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        log = (self.dir / "redis.log").open("ab")
        self._proc = subprocess.Popen(
            [
                self.exe,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--daemonize", "no",
                "--protected-mode", "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                if _command(self.port, "PING").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                text = (self.dir / "redis.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{text[-2000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None

    def flush(self) -> None:
        assert _command(self.port, "FLUSHALL").startswith(b"+OK")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's server, emptied for this test."""
    redis_server.flush()
    return redis_server.url
