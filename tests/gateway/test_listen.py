"""The gateway's listening socket hands out connections without Nagle, and its replies
leave in one write, as soon as they are complete."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from polyroute.gateway._http11 import HIGH_WATER, Http11, _Cycle
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


async def _connection(transport: asyncio.Transport, state: ServerState | None = None) -> Http11:
    config = ServeConfig(_no_app, read_timeout_s=10, max_connections=10, lifespan="off")
    connection = Http11(config, state or ServerState(), {}, asyncio.get_running_loop())
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


async def _replied(connection: Http11, in_progress: int, keep_alive: bool = True) -> _Cycle:
    """A reply written and complete on ``connection`` while ``in_progress`` requests (its own
    among them) are in progress in the worker."""
    connection.tasks.update(object() for _ in range(in_progress))
    cycle = _Cycle(connection, {"method": "POST"}, keep_alive, False)
    connection.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    connection.response_complete(cycle)
    return cycle


async def test_a_reply_leaves_with_the_turns_others_while_other_requests_are_in_progress() -> None:
    """Alone, a reply's last write leaves at once; with others in progress, at the turn's end
    with the other replies of that turn, so an idle caller is woken once for them all."""
    inner = _Recorder()
    await _replied(await _connection(inner), in_progress=1)
    assert len(inner.writes) == 1  # at once
    inner, other = _Recorder(), _Recorder()
    worker = ServerState()
    first, second = await _connection(inner, worker), await _connection(other, worker)
    await _replied(first, in_progress=2)
    await _replied(second, in_progress=0)  # the same worker: the first's two count
    assert inner.writes == other.writes == []  # held for the turn's end
    await asyncio.sleep(0)
    assert len(inner.writes) == len(other.writes) == 1
    assert inner.calls == other.calls == []  # kept alive


async def test_a_held_reply_goes_out_before_its_connection_closes() -> None:
    inner = _Recorder()
    connection = await _connection(inner)
    await _replied(connection, in_progress=2)
    assert inner.writes == []
    connection.shutdown()  # graceful shutdown of a waiting connection
    assert (len(inner.writes), inner.calls) == (1, ["close"])
    inner = _Recorder()
    await _replied(await _connection(inner), in_progress=2, keep_alive=False)
    assert (len(inner.writes), inner.calls) == (1, ["close"])  # "connection: close": now


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
