"""The gateway's listening socket hands out connections without Nagle, and its replies
leave in one write, as soon as they are complete."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from polyroute.gateway._http11 import HIGH_WATER, Http11
from polyroute.gateway._server import ServeConfig, listen


def _accepted_nodelay(server: socket.socket) -> int:
    server.listen(1)
    with socket.create_connection(server.getsockname()[:2]) as client:
        conn, _ = server.accept()
        with conn:
            del client
            return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_the_gateways_connections_are_nodelay() -> None:
    # asyncio skips its own TCP_NODELAY for a socket made with proto 0, as this one is
    with listen("127.0.0.1", 0) as server:
        assert server.proto == 0
        assert _accepted_nodelay(server) != 0


class _Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.calls: list[str] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.calls.append("close")

    def is_closing(self) -> bool:
        return "close" in self.calls


async def _connection(transport: asyncio.Transport) -> Http11:
    config = ServeConfig(_no_app, read_timeout_s=10, max_connections=10, lifespan="off")
    connection = Http11(config, ServerState(), {}, asyncio.get_running_loop())
    connection.connection_made(transport)
    return connection


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


async def test_the_writes_of_one_loop_turn_leave_as_one() -> None:
    """A head and a body (or several stream frames) written in one turn: one send."""
    inner = _Recorder()
    connection = await _connection(inner)
    connection.write(b"HTTP/1.1 200 OK\r\n\r\n")
    connection.write(b"body")
    assert inner.writes == []
    await asyncio.sleep(0)  # the turn ends: out before anything else is awaited
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    connection.write(b"frame")
    await asyncio.sleep(0)
    assert inner.writes[-1] == b"frame"
    connection.connection_lost(None)


async def test_close_sends_what_is_held_first_and_a_large_write_is_not_held() -> None:
    inner = _Recorder()
    connection = await _connection(inner)
    connection.write(b"last")
    connection.close()
    assert (inner.writes, inner.calls) == ([b"last"], ["close"])
    inner = _Recorder()
    connection = await _connection(inner)
    connection.write(b"x" * (HIGH_WATER + 1))  # past the high-water mark: the transport's
    assert inner.writes == [b"x" * (HIGH_WATER + 1)]  # flow control must see it now
    connection.connection_lost(None)


def test_a_replys_last_write_leaves_before_the_apps_work_after_it() -> None:
    """Writes wait for the loop's next turn, but not a reply's last one: the app's work
    after its reply (the access log, metrics) would delay it."""
    release = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        release.wait(10)  # work after the reply, holding the loop

    sock = listen("127.0.0.1", 0)
    config = ServeConfig(
        app, read_timeout_s=10, max_connections=10, lifespan="off", log_level="critical"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        with socket.create_connection(sock.getsockname()[:2], timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
            reply = b""
            while not reply.endswith(b"\r\n\r\nok"):
                reply += client.recv(4096)  # a held reply times out here
        assert reply.startswith(b"HTTP/1.1 200 ")
    finally:
        release.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_app_is_served_without_uvicorns_forwarded_for_layer() -> None:
    # nothing reads the client's address: the layer that rewrites it would only cost
    config = ServeConfig(_no_app, read_timeout_s=10, max_connections=10, lifespan="off")
    config.load()
    assert config.loaded_app is _no_app
