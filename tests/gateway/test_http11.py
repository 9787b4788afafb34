"""The gateway's HTTP/1.1 server layer, seen from the wire: what the protocol class a
:class:`ServeConfig` serves with must keep doing (pipelining, keep-alive, 100-continue, HEAD,
chunked framing both ways, flow control both ways, errors, disconnects, graceful shutdown)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import uvicorn

from polyroute.gateway._server import ServeConfig, listen

App = Any
Address = tuple[str, int]


@dataclass
class _Served:
    server: uvicorn.Server
    address: Address
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@contextmanager
def _serving(
    app: App,
    *,
    read_timeout_s: float = 5.0,
    max_connections: int = 100,
    sndbuf: int | None = None,
) -> Iterator[_Served]:
    """The app behind the default (guarded) protocol, on a loopback port, in a thread."""
    sock = listen("127.0.0.1", 0)
    if sndbuf is not None:  # inherited by accepted connections: no send buffer autotuning
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    config = ServeConfig(
        app,
        read_timeout_s=read_timeout_s,
        max_connections=max_connections,
        lifespan="off",
        log_level="critical",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    served = _Served(server, sock.getsockname()[:2], thread)
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        yield served
    finally:
        served.stop()
        sock.close()


@dataclass
class _Response:
    status: int
    head: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw_body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None


class _Client:
    """A raw socket with a read buffer, so pipelined replies are read one at a time."""

    def __init__(self, address: Address, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connecting: it sets the advertised window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(address)
        self.buf = bytearray()

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise EOFError(f"closed by the server; unread: {bytes(self.buf)!r}")
        self.buf += data

    def read_until(self, sep: bytes) -> bytes:
        while (at := self.buf.find(sep)) < 0:
            self._fill()
        end = at + len(sep)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_all(self) -> bytes:
        """Everything until the server closes."""
        while True:
            try:
                self._fill()
            except EOFError:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed(self) -> bool:
        """Whether the server closed with nothing more to read (waits up to the timeout)."""
        return not self.buf and self.sock.recv(1) == b""

    def response(self, *, no_body: bool = False) -> _Response:
        """One response: its head, then a content-length, chunked or close-delimited body
        (none for a 1xx, or when ``no_body``: the reply to a HEAD)."""
        head = self.read_until(b"\r\n\r\n")
        status_line, *lines = head[:-4].split(b"\r\n")
        version, status, _ = (*status_line.split(b" ", 2), b"")[:3]
        assert version == b"HTTP/1.1", head
        headers = []
        for line in lines:
            name, sep, value = line.partition(b":")
            assert sep and name == name.strip(), head
            headers.append((name.lower(), value.strip()))
        response = _Response(int(status), head, headers, b"", b"")
        if no_body or response.status < 200 or response.status in (204, 304):
            return response
        length = response.header(b"content-length")
        if length is not None:
            assert response.header(b"transfer-encoding") is None, head
            response.body = response.raw_body = self.read_exactly(int(length))
            return response
        if response.header(b"transfer-encoding") is None:  # delimited by the close
            assert response.header(b"connection") == b"close", head
            response.body = response.raw_body = self.read_all()
            return response
        assert response.header(b"transfer-encoding") == b"chunked", head
        raw, body = bytearray(), bytearray()
        while True:
            size_line = self.read_until(b"\r\n")
            size = int(size_line[:-2], 16)
            chunk = self.read_exactly(size + 2)
            assert chunk.endswith(b"\r\n"), chunk[-10:]
            raw += size_line + chunk
            body += chunk[:-2]
            if size == 0:
                break
        response.raw_body, response.body = bytes(raw), bytes(body)
        return response


def _get(served: _Served, path: bytes) -> _Response:
    """The response to one GET of ``path`` on a new connection."""
    with _Client(served.address) as client:
        client.send(b"GET %b HTTP/1.1\r\nhost: gateway\r\n\r\n" % path)
        return client.response()


async def _reply(send: Any, body: bytes, *, status: int = 200, headers: Any = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def _echo_path(scope: Any, receive: Any, send: Any) -> None:
    await _read_body(receive)
    await _reply(send, scope["path"].encode())


def test_pipelined_requests_are_answered_in_order() -> None:
    with _serving(_echo_path) as served, _Client(served.address) as client:
        client.send(
            b"GET /one HTTP/1.1\r\nhost: gateway\r\n\r\nGET /two HTTP/1.1\r\nhost: gateway\r\n\r\n"
        )
        first, second = client.response(), client.response()
        assert (first.status, first.body) == (200, b"/one")
        assert (second.status, second.body) == (200, b"/two")
        assert first.header(b"connection") is None


def test_a_kept_alive_connection_serves_requests_until_one_says_close() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await _reply(send, b"%s %d" % (scope["path"].encode(), scope["client"][1]))

    with _serving(app) as served, _Client(served.address) as client:
        port = client.sock.getsockname()[1]
        for path in (b"/1", b"/2", b"/3"):
            client.send(b"GET %s HTTP/1.1\r\nhost: gateway\r\n\r\n" % path)
            reply = client.response()
            assert (reply.status, reply.body) == (200, b"%s %d" % (path, port))
            assert reply.header(b"connection") is None
        client.send(b"GET /4 HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n\r\n")
        last = client.response()
        assert (last.status, last.body) == (200, b"/4 %d" % port)
        assert last.header(b"connection") == b"close"
        assert client.closed()


def test_an_http10_request_is_answered_then_closed() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await _reply(send, scope["http_version"].encode())

    with _serving(app) as served, _Client(served.address) as client:
        client.send(b"GET / HTTP/1.0\r\nhost: gateway\r\n\r\n")
        reply = client.response()
        assert (reply.status, reply.body) == (200, b"1.0")
        assert reply.head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert reply.header(b"connection") == b"close"
        assert client.closed()


def test_100_continue_is_sent_when_the_app_reads_the_body() -> None:
    gate = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.to_thread(gate.wait, 5)
        body = await _read_body(receive)
        await _reply(send, body)

    body = b"a body to wait for"
    with _serving(app) as served, _Client(served.address) as client:
        client.send(
            b"POST /up HTTP/1.1\r\nhost: gateway\r\nexpect: 100-continue\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        client.sock.settimeout(0.15)
        with pytest.raises(TimeoutError):  # nothing before the app asks for the body
            client.sock.recv(1)
        client.sock.settimeout(5)
        gate.set()
        assert client.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(body)
        reply = client.response()
        assert (reply.status, reply.body) == (200, body)


def test_a_reply_to_head_has_the_length_but_no_body_and_the_connection_goes_on() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await _reply(send, b"hello")

    with _serving(app) as served, _Client(served.address) as client:
        client.send(b"HEAD / HTTP/1.1\r\nhost: gateway\r\n\r\n")
        head = client.response(no_body=True)
        assert (head.status, head.header(b"content-length")) == (200, b"5")
        client.send(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
        get = client.response()  # a leaked "hello" would stand where this status line is
        assert (get.status, get.body) == (200, b"hello")
        assert not client.buf


def test_replies_are_dated_and_a_stream_without_length_is_chunked() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b"world", "more_body": False})

    with _serving(app) as served, _Client(served.address) as client:
        client.send(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
        reply = client.response()
        assert reply.status == 200
        assert reply.header(b"server") == b"uvicorn"
        date = reply.header(b"date")
        assert date is not None
        assert abs(parsedate_to_datetime(date.decode()).timestamp() - time.time()) < 60
        assert reply.header(b"transfer-encoding") == b"chunked"
        assert reply.header(b"content-length") is None
        assert reply.raw_body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
        assert reply.body == b"hello world"


def test_a_garbage_request_line_is_a_400_and_closed() -> None:
    with _serving(_echo_path) as served, _Client(served.address) as client:
        client.send(b"NOT HTTP\r\n\r\n")
        reply = client.response()
        assert reply.status == 400
        assert reply.header(b"connection") == b"close"
        assert client.closed()


def test_a_chunked_request_body_reaches_the_app_whole() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _reply(send, await _read_body(receive))

    with _serving(app) as served, _Client(served.address) as client:
        client.send(
            b"POST / HTTP/1.1\r\nhost: gateway\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        time.sleep(0.02)
        client.send(b"6\r\n world\r\n0\r\n\r\n")
        reply = client.response()
        assert (reply.status, reply.body) == (200, b"hello world")


def test_a_large_request_body_reaches_the_app_whole() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = await _read_body(receive)
        await _reply(send, b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode()))

    body = bytes(range(256)) * 4096  # 1 MiB, past the server's 64 KiB read pause
    with _serving(app) as served, _Client(served.address) as client:
        client.send(b"POST / HTTP/1.1\r\nhost: gateway\r\ncontent-length: %d\r\n\r\n" % len(body))
        for at in range(0, len(body), 50_000):
            client.send(body[at : at + 50_000])
        reply = client.response()
        assert reply.status == 200
        assert reply.body == b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())


def test_a_large_reply_waits_for_a_slow_reader_and_arrives_whole() -> None:
    piece = 64 * 1024
    pieces = [bytes([i]) * piece for i in range(64)]  # 4 MiB
    sent = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(piece * len(pieces)).encode())],
            }
        )
        for i, data in enumerate(pieces):
            more = i < len(pieces) - 1
            await send({"type": "http.response.body", "body": data, "more_body": more})
        sent.set()

    # small kernel buffers both ends, so the reply must wait in the server for the reader
    with _serving(app, sndbuf=64 * 1024) as served, _Client(served.address, rcvbuf=64 * 1024) as c:
        c.send(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
        time.sleep(0.2)
        assert not sent.is_set()  # held back (drain) while nothing was read, without yielding
        reply = c.response()
        assert reply.status == 200
        assert reply.body == b"".join(pieces)
        assert sent.wait(2)


def test_the_app_sees_the_client_disconnect() -> None:
    seen: list[Any] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        seen.append(await receive())
        done.set()

    with _serving(app) as served:
        with _Client(served.address) as client:
            client.send(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
            client.read_until(b"\r\n\r\n")
            assert client.read_until(b"first\r\n") == b"5\r\nfirst\r\n"
            assert not done.is_set()
        assert done.wait(2)
        assert seen == [{"type": "http.disconnect"}]


def test_an_app_error_is_a_500_before_the_reply_and_a_cut_after_it() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        if scope["path"] == "/early":
            raise RuntimeError("before the reply")
        if scope["path"] == "/late":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"10")],
                }
            )
            await send({"type": "http.response.body", "body": b"abc", "more_body": True})
            raise RuntimeError("during the reply")
        await _reply(send, b"fine")

    with _serving(app) as served:
        with _Client(served.address) as client:
            client.send(b"GET /early HTTP/1.1\r\nhost: gateway\r\n\r\n")
            reply = client.response()
            assert (reply.status, reply.body) == (500, b"Internal Server Error")
            assert reply.header(b"connection") == b"close"
            assert client.closed()
        with _Client(served.address) as client:
            client.send(b"GET /late HTTP/1.1\r\nhost: gateway\r\n\r\n")
            head = client.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert client.read_all() == b"abc"  # cut short of its 10 bytes
        reply = _get(served, b"/ok")
        assert (reply.status, reply.body) == (200, b"fine")


def test_a_header_value_with_a_line_break_injects_no_header() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        bad = scope["path"] == "/bad"
        await _reply(send, b"ok", headers=[(b"x-bad", b"a\r\nx-injected: 1")] if bad else [])

    with _serving(app) as served:
        with _Client(served.address) as client:
            client.send(b"GET /bad HTTP/1.1\r\nhost: gateway\r\n\r\n")
            wire = client.read_all()
        assert b"x-injected" not in wire.lower()
        assert wire == b"" or wire.startswith(b"HTTP/1.1 500 ")
        reply = _get(served, b"/good")  # the server goes on
        assert (reply.status, reply.body) == (200, b"ok")


def test_the_scope_has_the_path_query_and_connection() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        seen = {
            "method": scope["method"],
            "scheme": scope["scheme"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode(),
            "raw_path_type": type(scope["raw_path"]).__name__,
            "query_string": scope["query_string"].decode(),
            "query_string_type": type(scope["query_string"]).__name__,
            "client": scope["client"],
            "client_type": type(scope["client"]).__name__,
            "server": scope["server"],
            "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]],
        }
        await _reply(send, json.dumps(seen).encode())

    with _serving(app) as served, _Client(served.address) as client:
        client.send(
            b"GET /a%20b/c?x=1&y=2 HTTP/1.1\r\nHost: gateway\r\nX-Mixed-Case: Value\r\n\r\n"
        )
        seen = json.loads(client.response().body)
        assert seen["method"] == "GET"
        assert seen["scheme"] == "http"
        assert seen["path"] == "/a b/c"
        assert (seen["raw_path"], seen["raw_path_type"]) == ("/a%20b/c", "bytes")
        assert (seen["query_string"], seen["query_string_type"]) == ("x=1&y=2", "bytes")
        assert seen["client_type"] == "tuple"
        assert tuple(seen["client"]) == client.sock.getsockname()[:2]
        assert tuple(seen["server"]) == served.address
        assert seen["headers"] == [["host", "gateway"], ["x-mixed-case", "Value"]]

        client.send(b"POST http://example.com/p?q=1 HTTP/1.1\r\nhost: example.com\r\n\r\n")
        seen = json.loads(client.response().body)
        assert seen["method"] == "POST"
        assert (seen["path"], seen["raw_path"], seen["query_string"]) == ("/p", "/p", "q=1")


def test_shutdown_finishes_a_request_in_flight_and_closes_idle_connections() -> None:
    entered = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        if scope["path"] == "/slow":
            entered.set()
            await asyncio.sleep(0.5)
        await _reply(send, scope["path"].encode())

    with (
        _serving(app) as served,
        _Client(served.address) as silent,
        _Client(served.address) as idle,
        _Client(served.address) as busy,
    ):
        idle.send(b"GET /idle HTTP/1.1\r\nhost: gateway\r\n\r\n")
        assert idle.response().body == b"/idle"
        busy.send(b"GET /slow HTTP/1.1\r\nhost: gateway\r\n\r\n")
        assert entered.wait(2)
        started = time.monotonic()
        served.server.should_exit = True
        assert idle.closed()
        assert silent.closed()
        assert time.monotonic() - started < 0.45  # before the slow reply: by the shutdown
        reply = busy.response()
        assert (reply.status, reply.body) == (200, b"/slow")
        assert reply.header(b"connection") == b"close"
        assert busy.closed()
        served.thread.join(timeout=5)
        assert not served.thread.is_alive()


def test_the_scope_state_is_fresh_for_each_request() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        before = dict(scope["state"])
        scope["state"]["seen"] = scope["path"]
        await _reply(send, json.dumps(before).encode())

    with _serving(app) as served:
        with _Client(served.address) as client:
            for path in (b"/1", b"/2"):
                client.send(b"GET %s HTTP/1.1\r\nhost: gateway\r\n\r\n" % path)
                assert json.loads(client.response().body) == {}
        assert json.loads(_get(served, b"/3").body) == {}


def test_an_app_that_breaks_the_asgi_contract_gets_a_500_or_a_cut() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        path = scope["path"]
        if path == "/silent":  # returns without a reply
            return
        if path == "/body-first":  # a body before the head
            await send({"type": "http.response.body", "body": b"x"})
        head = {"type": "http.response.start", "status": 200}
        if path == "/unfinished":  # a head and half a body, then returns
            await send({**head, "headers": [(b"content-length", b"4")]})
            await send({"type": "http.response.body", "body": b"ab", "more_body": True})
            return
        if path == "/too-long":  # more body than its content-length
            await send({**head, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"abc"})
        if path == "/bad-name":
            await send({**head, "headers": [(b"x bad", b"1")]})
        await _reply(send, b"fine")

    with _serving(app) as served:
        for path in ("/silent", "/body-first", "/bad-name"):
            reply = _get(served, path.encode())
            assert (reply.status, reply.body) == (500, b"Internal Server Error"), path
        for path in ("/unfinished", "/too-long"):
            with _Client(served.address) as client:
                client.send(b"GET %b HTTP/1.1\r\nhost: gateway\r\n\r\n" % path.encode())
                head = client.read_until(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 ")
                assert client.read_all() in (b"ab", b"")  # cut, never more than announced
        assert _get(served, b"/ok").body == b"fine"


def test_an_upgrade_is_answered_as_plain_http_then_closed() -> None:
    """The gateway speaks no WebSocket: the request is an ordinary one, and the connection
    closes after it (the parser reads nothing past an upgrade's head)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await _reply(send, scope["path"].encode())

    with _serving(app) as served, _Client(served.address) as client:
        client.send(
            b"GET /ws HTTP/1.1\r\nhost: gateway\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        )
        reply = client.response()
        assert (reply.status, reply.body) == (200, b"/ws")
        assert reply.header(b"connection") == b"close"
        assert client.closed()


def test_a_connection_idle_past_the_read_timeout_is_kept_and_its_next_head_timed() -> None:
    """Between requests the keep-alive timeout applies, not the read timeout; a head that
    then begins has the read timeout again (one timer a connection serves both)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await _reply(send, b"ok")

    with _serving(app, read_timeout_s=0.2) as served, _Client(served.address) as client:
        for _ in range(2):
            client.send(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
            assert client.response().body == b"ok"
            time.sleep(0.5)  # idle, past the read timeout: still open
        client.send(b"GET / HTTP/1.1\r\n")  # and the rest never comes
        began = time.monotonic()
        assert client.closed()
        assert time.monotonic() - began < 2
