"""The gateway's HTTP/1.1 protocol: httptools' parser driving the ASGI app, guarded.

uvicorn runs the process (sockets, workers, lifespan, signals, graceful shutdown) and
makes one :class:`Http11` per connection (:class:`~polyroute.gateway._server.ServeConfig`
names it as its ``http``). It does what uvicorn's httptools protocol does (pipelining,
keep-alive, ``100-continue``, flow control both ways, ``HEAD``, HTTP/1.0, chunked bodies
both ways, a 400 for what does not parse, a 500 for an app that fails before it answers,
the client's disconnect seen by ``receive``, graceful shutdown), with less work a request:
one lazy timer a connection instead of two timers a request, a future instead of an
``asyncio.Event``, two regular expressions a response (its names, its values) instead of
two a header (``bench/served_instructions.py --kinds floor``). And it guards the worker against
callers that hold connections without using them, which uvicorn does not:

- a caller has ``read_timeout_s`` to send a request's head and body, from connecting (or
  from the first byte of its next request on a kept-alive connection); then it is closed,
  and a request whose body was still coming is logged as a 408;
- a head over :data:`MAX_HEAD_BYTES` is refused with 431;
- a worker holds at most ``max_connections`` (and never more than half its file
  descriptors: upstreams and the ledger need the rest). Past it, the connections that
  have waited longest without a request in progress are closed to make room, so a new
  caller is served; when every connection has a request in progress, the new one is
  closed at once.

Writes made in one turn of the event loop leave as one system call, at the start of the
next turn (a response's head and body; a stream's frames): each write is a good part of
a request's cost on loopback. A response's last write leaves at once when its request is
the worker's only one in progress: the app's work after it (the access log, metrics)
would otherwise delay the reply. With others in progress it leaves at the turn's end,
with the other replies written in that turn: a caller that is idle between our writes
(a client process, a load balancer) is woken once for them all, not once each (on the
2-core VM of ``bench/gateway.py``, wrk slept and woke once a request, and each wakeup
cost the writer more than its write; see the README).
"""

from __future__ import annotations

import asyncio
import heapq
import http
import logging
import urllib.parse
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

from polyroute._conn import Deadline, WriteFlow
from polyroute.gateway._observe import READ_TIMED_OUT

if TYPE_CHECKING:
    from uvicorn.server import ServerState

    from polyroute.gateway._server import ServeConfig

MAX_HEAD_BYTES = 64 * 1024
"""A request line and headers larger than this are refused (httptools has no limit)."""

LINGER_S = 1.0
"""After a 431, how long the rest of the caller's head is read and dropped before closing."""

HIGH_WATER = 64 * 1024
"""Request body buffered past this pauses reading; writes held past it are sent at once."""

_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_ASGI = {"version": "3.0", "spec_version": "2.3"}
# bytes a header name or value must not hold: what `_refused` deletes (a translate is a
# table lookup a byte, a regular expression's character class several times that)
_NOT_IN_NAME = bytes(range(0x20)) + b'\x7f()<>@,;:[]={} \\"'
_NOT_IN_VALUE = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
_METHODS = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")}

logger = logging.getLogger("uvicorn.error")  # where uvicorn's own protocols log


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %b\r\n" % (status, phrase)


_STATUS = {status: _status_line(status) for status in range(100, 600)}


class Http11(WriteFlow, asyncio.Protocol):
    """One connection: its parser, its requests in turn, its guard (see the module docs).

    A connection is *waiting* while no request of it is in progress: before its first
    request's head is complete, and between requests. Waiting connections are the ones
    closed to make room, oldest first.
    """

    transport: asyncio.Transport

    def __init__(
        self,
        config: ServeConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_running_loop()
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections  # uvicorn's type names its own
        self.tasks = server_state.tasks
        self.app_state = app_state
        self.root_path = config.root_path
        self.read_timeout_s = config.read_timeout_s
        self.keep_alive_s = float(config.timeout_keep_alive)
        self.parser = httptools.HttpRequestParser(self)
        # answer a pipelined request that came before the caller's close (as uvicorn does)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.cycle: _Cycle | None = None
        self.pipeline: deque[_Cycle] = deque()
        self._client: tuple[str, int] | None = None
        self._server: tuple[str, int | None] | None = None
        self._scheme = "http"
        # the request being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect = False
        # the guard
        self._deadline = Deadline(self.loop, self._too_slow)  # when the connection is closed
        self._reading = False  # the deadline is for a request's head and body, not idleness
        self._since = 0.0
        self._idle = True
        self._in_head = False
        self._head_bytes = 0
        self._refused = False
        # writes held for the turn's end, and flow control
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._read_paused = False
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._default_block = b""

    # -- the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        self.connections.add(self)
        self._client = get_remote_addr(self.transport)  # as uvicorn's own protocols do
        self._server = get_local_addr(self.transport)
        if is_ssl(self.transport):
            self._scheme = "https"
        now = self.loop.time()
        self._since = now
        self._reading = True
        self._deadline.set(now + self.read_timeout_s)
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._out = []
        self._deadline.cancel()
        cycle = self.cycle
        if cycle is not None:
            if not cycle.complete:
                cycle.disconnected = True
            cycle.wake()
        self.resume_writing()  # a send waiting to drain sees the disconnect

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; a request in progress sees a disconnect

    def data_received(self, data: bytes) -> None:
        if self._refused:  # the rest of a refused head: read and dropped until the close
            return
        if self._idle or self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # answered as plain HTTP, then closed (the request's keep_alive is off)
        except httptools.HttpParserError:
            logger.warning("Invalid HTTP request received.")
            self._bad_request()
            return
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse_head()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close if waiting, else after the reply in progress."""
        cycle = self.cycle
        if cycle is None or cycle.complete:
            self.close()  # a reply held for the turn's end goes first
        else:
            cycle.keep_alive = False

    # -- the parser's callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._expect = False
        self._idle = False
        self._in_head = True
        if not self._reading:  # a kept-alive connection's next request begins
            self._reading = True
            self._deadline.set(self.loop.time() + self.read_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self.parser
        method = parser.get_method()
        version = parser.get_http_version()
        url = self._url
        # origin form, as every client sends (find: `in` on bytes first tries the operand as
        # an integer, and formats the TypeError it gets, on CPython 3.11)
        if url[:1] == b"/" and url.find(b"#") < 0:
            raw_path, _, query = url.partition(b"?")
        else:
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"", parsed.query or b""
        path = raw_path.decode("ascii")  # llhttp refuses anything else in a URL
        if "%" in path:
            path = urllib.parse.unquote(path)
        root = self.root_path
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": version,
            "server": self._server,
            "client": self._client,
            "scheme": self._scheme,
            "root_path": root,
            "headers": self._headers,
            "state": self.app_state.copy(),
            "method": _METHODS.get(method) or method.decode("ascii"),
            "path": root + path if root else path,
            "raw_path": root.encode() + raw_path if root else raw_path,
            "query_string": query,
        }
        # an upgrade is answered as plain HTTP: the parser stops reading after its head
        keep_alive = version == "1.1" and parser.should_keep_alive() and not parser.should_upgrade()
        cycle = _Cycle(self, scope, keep_alive, self._expect)
        previous = self.cycle
        self.cycle = cycle
        if previous is None or previous.complete:
            self._run(cycle)
        else:  # pipelined: it waits for the reply in progress
            self.pause_reading()
            self.pipeline.append(cycle)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        if cycle.complete:  # answered without reading its body: dropped
            return
        cycle.parts.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > HIGH_WATER:
            self.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        self._reading = False
        self._deadline.clear()  # head and body are in
        cycle = self.cycle
        assert cycle is not None
        if cycle.complete:
            return
        cycle.more_body = False
        cycle.wake()

    # -- requests in turn

    def _run(self, cycle: _Cycle) -> None:
        task = self.loop.create_task(cycle.run(self.app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def response_complete(self, cycle: _Cycle) -> None:
        """A reply's last byte is written: send it (now, or with the turn's other replies:
        see the module docs), then start the next request."""
        self.server_state.total_requests += 1
        if not cycle.keep_alive:
            self.close()
            return
        if len(self.tasks) <= 1:  # its own request's task is the only one
            self.flush()
        transport = self.transport
        if transport.is_closing():
            return
        self.resume_reading()
        if self.pipeline:
            self._run(self.pipeline.popleft())
            return
        now = self.loop.time()
        self._since = now
        self._idle = True
        self._head_bytes = 0
        if not self._reading:  # else the next request's head has begun: its deadline holds
            self._deadline.set(now + self.keep_alive_s)

    def default_headers(self) -> bytes:
        """uvicorn's ``date`` and ``server`` headers (the date changes each second)."""
        defaults = self.server_state.default_headers
        if defaults is not self._defaults:
            self._defaults = defaults
            self._default_block = b"".join(b"%b: %b\r\n" % pair for pair in defaults)
        return self._default_block

    # -- writes

    def write(self, data: bytes) -> None:
        """Hold ``data`` until the turn's end (or until enough is held to be worth a send)."""
        out = self._out
        if not out:
            self.loop.call_soon(self.flush)
        out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes > HIGH_WATER:
            self.flush()

    def flush(self) -> None:
        """Send what was written so far (nothing, if that was sent already)."""
        out = self._out
        if out:
            self._out = []
            self._out_bytes = 0
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()

    def _bad_request(self) -> None:
        msg = b"Invalid HTTP request received."
        self.write(
            _STATUS[400]
            + self.default_headers()
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(msg), msg)
        )
        self.close()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    # -- the guard

    def _too_slow(self) -> None:
        cycle = self.cycle
        if self._reading and cycle is not None and cycle.more_body and not cycle.complete:
            cycle.scope[READ_TIMED_OUT] = True  # the app sees a disconnect: logged as 408
        self.close()

    def _refuse_head(self) -> None:
        # a lingering close: closing with the caller's bytes unread would make the kernel
        # reset the connection, and the reset can destroy the 431 before it is read
        self._refused = True
        self._deadline.cancel()
        self.flush()
        self.transport.write(_HEAD_TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def waiting(self) -> bool:
        cycle = self.cycle
        return cycle is None or cycle.complete

    def _make_room(self) -> None:
        bound = self.config.max_connections
        if len(self.connections) <= bound:
            return
        live = [c for c in self.connections if isinstance(c, Http11) and c.open()]
        excess = len(live) - bound
        if excess <= 0:  # the rest are closing already
            return
        # a few more than needed, so the next arrivals need no scan
        waiting = [c for c in live if c is not self and c.waiting()]
        victims = heapq.nsmallest(excess + bound // 16, waiting, key=_waited_since)
        for victim in victims:
            victim.close()
        if len(victims) < excess:  # every other connection has a request in progress
            self.close()

    def open(self) -> bool:
        return not self.transport.is_closing()


def _waited_since(connection: Http11) -> float:
    return connection._since


class _Cycle:
    """One request and its reply: the ASGI app's ``receive`` and ``send``."""

    __slots__ = (
        "buffered",
        "chunked",
        "complete",
        "conn",
        "disconnected",
        "expect_100",
        "head_only",
        "keep_alive",
        "more_body",
        "parts",
        "ready",
        "remaining",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, conn: Http11, scope: dict[str, Any], keep_alive: bool, expect: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect
        self.head_only = scope["method"] == "HEAD"
        self.parts: list[bytes] = []
        self.buffered = 0
        self.more_body = True
        self.ready = False  # body or an end to hand out: receive need not wait
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.complete = False
        self.disconnected = False
        self.chunked = False
        self.remaining = 0  # body bytes still owed by a content-length

    def wake(self) -> None:
        self.ready = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except Exception:
            # the app's failure is this request's alone: a 500 if nothing was sent yet
            logger.exception("Exception in ASGI application")
            if not self.started:
                await self._fail()
            else:
                self.conn.close()
            return
        except BaseException:  # cancelled (a shutdown past its grace): no half reply
            self.conn.close()
            raise
        if result is not None:
            logger.error("ASGI callable should return None, but returned %r.", result)
            self.conn.close()
        elif not self.started and not self.disconnected:
            logger.error("ASGI callable returned without starting response.")
            await self._fail()
        elif not self.complete and not self.disconnected:
            logger.error("ASGI callable returned without completing response.")
            self.conn.close()

    async def _fail(self) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"21"),
            (b"connection", b"close"),
        ]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        if self.expect_100:
            self.expect_100 = False
            if not conn.transport.is_closing():
                conn.write(_CONTINUE)
        if not (self.disconnected or self.complete):
            if not self.ready:
                conn.resume_reading()
                self.waiter = conn.loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            self.ready = False
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts = []
        self.buffered = 0
        conn.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Any) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drained()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got {kind!r}."
                )
            conn.write(self._head(message["status"], message.get("headers", ())))
            self.started = True
            self.expect_100 = False
        elif not self.complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got {kind!r}.")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.head_only:
                self.remaining = 0
            elif self.chunked:
                if body:
                    conn.write(b"%x\r\n%b\r\n" % (len(body), body))
                if not more:
                    conn.write(_LAST_CHUNK)
            else:
                if len(body) > self.remaining:
                    raise RuntimeError("Response content longer than Content-Length")
                self.remaining -= len(body)
                if body:
                    conn.write(body)
            if not more:
                if self.remaining:
                    raise RuntimeError("Response content shorter than Content-Length")
                self.complete = True
                self.wake()
                conn.response_complete(self)
        else:
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r} sent, after response already completed."
            )

    def _head(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The status line and headers, checked: nothing the app sends can split them."""
        lines = [_STATUS.get(status) or _status_line(status), self.conn.default_headers()]
        names = []
        length: int | None = None
        close = False
        for raw, value in headers:
            name = raw.lower()
            if name == b"content-length":
                if length is None and not self.chunked:
                    length = int(value)
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.chunked = True
                    length = None
            elif name == b"connection" and b"close" in [
                t.strip() for t in value.lower().split(b",")
            ]:
                self.keep_alive = False
                close = True
            names.append(name)
            lines += (name, b": ", value, b"\r\n")
        values = b"".join(
            lines[4::4]
        )  # after the status line and defaults: name, ": ", value, CRLF
        if _refused(b"".join(names), _NOT_IN_NAME) or _refused(values, _NOT_IN_VALUE):
            raise RuntimeError("Invalid HTTP header name or value.")
        if not self.keep_alive and not close:
            lines.append(b"connection: close\r\n")
        if length is not None:
            self.remaining = length
        elif not self.chunked and not self.head_only and status not in (204, 304):
            self.chunked = True  # neither a length nor chunked: chunked
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)


def _refused(data: bytes, refused: bytes) -> bool:
    """Whether ``data`` holds any byte of ``refused``."""
    return len(data.translate(None, refused)) != len(data)
