"""A lean HTTP/1.1 transport for the pooled client: a protocol on httptools' parser.

httpx2's default transport (httpcore2 over anyio) spends most of a loopback call's
CPU on pool bookkeeping: each request polls every idle connection's socket and
walks anyio's typed attributes. Measured on the gateway's path (a chat completion
to a local upstream, one process): about 800 µs of CPU per call, which alone
caps a gateway worker near 1,200 requests/s. This transport does only what
polyroute's calls need: HTTP/1.1 with keep-alive, ``content-length``, chunked and
close-delimited bodies, streamed responses, TLS, and connect/read/write timeouts.
It raises httpx2's exceptions, so one error mapping serves it and any other transport.

Each connection is an :class:`asyncio.Protocol` whose bytes go straight into httptools'
response parser (llhttp, in C): a reply that comes in one read (a JSON answer, with its
head) is parsed before the caller is woken once, and a stream's body is handed on per
network read. Over asyncio's streams (a reader, a writer, ``readuntil`` and a head
parsed in Python) the exchange cost about twice the instructions
(``bench/served_instructions.py --kinds floor``).

Two ways in: :meth:`LeanTransport.open`, which :class:`~polyroute.providers._http.HttpPool`
calls directly (httpx2's client layer, its request and response models, cost about as
much CPU again as the exchange itself), and httpx2's ``handle_async_request``, so it
also works under an ``httpx2.AsyncClient``.

Idle connections are kept per origin, most recent first; one the server has
closed is seen at once (its protocol got the EOF) and dropped. A request
that fails on a reused connection before any response byte arrives is sent once
more on a new connection: the server closed it while we were choosing it.
While other exchanges wait for their answers, a request of at most :data:`_HELD_MOST`
bytes is held until the event loop's turn ends and sent with the turn's others: an
upstream that is idle between our writes is woken once for them all, not once each (on
the 2-core VM of ``bench/gateway.py``, nginx slept and woke once a request, and each
wakeup cost the writer more than its write; see the README). Alone, a request goes at once.

Proxies are not spoken: :class:`HttpPool` keeps httpx2's own transport when a
proxy is configured in the environment. At DEBUG, the ``polyroute.http`` logger
notes each exchange: method, origin and path, status, and whether the connection
was reused (never headers, a query or a body).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncGenerator, Iterable, Mapping

import httptools
import httpx2

from polyroute._conn import Deadline, WriteFlow

log = logging.getLogger("polyroute.http")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODIED = frozenset({"POST", "PUT", "PATCH"})
_MAX_HEAD = 64 * 1024
_HIGH_WATER = 256 * 1024
"""Body bytes held unread past this pause the connection's reading until they are taken."""
_PART = 64 * 1024
"""The most a streamed body hands on at once: what a consumer holds, and checks against its
limits, a part at a time."""
_MAX_HEADS = 64
"""Request heads kept serialized (a provider's paths times its header sets: a handful)."""
_HELD_MOST = 64 * 1024
"""The largest request held for the turn's end; a larger one goes at once, with the write
timeout's back-pressure."""

_Head = tuple[bytes, bool]
Origin = tuple[str, str, int]


class _TimedOut(TimeoutError):
    """A wait of a connection outlasted its timeout."""


class _Stale(Exception):
    """A reused connection failed before any response byte: the server had closed it."""


class _Connection(WriteFlow, asyncio.Protocol):
    """One connection to an origin and the exchange in progress on it, if any.

    The parser's callbacks fill in the response; :meth:`wait` sleeps until something new
    (more of it, its end, the connection's end) arrives. A connection whose wait timed
    out, whose peer broke the protocol or which closed is *spent*: never used again.
    """

    raw: list[tuple[bytes, bytes]]
    """The response's headers as they came."""
    parts: list[bytes]
    """Body bytes not yet taken."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.spent = False  # closed by either side, timed out or broken
        self.lost: Exception | None = None  # what the connection ended with, if anything
        self.broken: str | None = None  # what the peer sent that is not HTTP/1.1
        self.read_paused = False
        self.begin()  # the exchange's fields, as each exchange starts them
        self.busy = False
        self._waiter: asyncio.Future[bool] | None = None  # its result: whether it timed out
        self._deadline = Deadline(loop, self.expire)  # of the wait in progress

    # -- the protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: this connection cannot be trusted
            self.close()
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.broken = self.broken or _why(exc, self.head)
            self.close()
        if not self.head and self.received > _MAX_HEAD:
            self.broken = "response head too large"
            self.close()
        elif self.buffered > _HIGH_WATER and not self.read_paused and not self.spent:
            self.read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool | None:
        self.spent = True
        self._wake()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.spent = True
        self.lost = exc
        self._wake()
        self.resume_writing()

    # -- the parser's callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request: the peer is broken
            raise ValueError("more than one response to a request")

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > _MAX_HEAD:  # a head that came whole in one read
            self.broken = "response head too large"
            raise ValueError(self.broken)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # informational: the response follows
            self.reason = b""
            self.raw = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.head = True

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.head:
            self.complete = True

    # -- an exchange

    @property
    def usable(self) -> bool:
        return not (self.spent or self.transport is None or self.transport.is_closing())

    def begin(self) -> None:
        """An exchange starts on this connection: its response so far is nothing."""
        self.busy = True
        self.received = 0  # bytes of this exchange so far
        self.head_bytes = 0
        self.status = 0
        self.reason = b""
        self.raw = []
        self.head = False
        self.keep_alive = True
        self.parts = []
        self.buffered = 0
        self.complete = False

    def take(self, most: int | None = None) -> bytes:
        """The body bytes that have arrived (at most ``most`` of them), handed over once."""
        parts = self.parts
        if not parts:
            return b""
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if most is not None and len(data) > most:
            self.parts = [data[most:]]
            self.buffered = len(data) - most
            data = data[:most]
        else:
            self.parts = []
            self.buffered = 0
        if self.read_paused and self.buffered <= _HIGH_WATER and not self.spent:
            self.read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return data

    async def wait(self, timeout: float | None) -> None:
        """Until something arrives or the connection ends; :class:`_TimedOut` (and the
        connection spent) past ``timeout``. One timer a connection, not one a wait (a
        stream from a vendor waits on nearly every read): :class:`Deadline`."""
        waiter = self._waiter = self.loop.create_future()
        if timeout is not None:
            self._deadline.set(self.loop.time() + timeout)
        try:
            await waiter
        finally:
            self._waiter = None
            self._deadline.clear()
        if waiter.result():
            raise _TimedOut

    def expire(self) -> None:
        """Time the wait in progress out, as its timer does: the connection is spent."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)  # "timed out", even if data came in this same turn
            self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(False)

    async def send(self, payload: bytes, timeout: float | None) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(payload)
        if self.write_paused and not await self.drained(timeout):
            self.close()
            raise _TimedOut

    def close(self) -> None:
        self.spent = True
        self._deadline.cancel()
        if self.transport is not None:
            self.transport.close()


def _why(exc: httptools.HttpParserError, head: bool) -> str:
    if head:
        return f"response body broken off ({exc or type(exc).__name__})"
    return f"bad status line or headers ({exc or type(exc).__name__})"


class LeanTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 connections as protocols, with a keep-alive pool (see module docs)."""

    def __init__(
        self, *, max_idle_per_origin: int = 200, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._ssl = ssl_context  # else httpx2's (certifi's roots), made on first use
        self.max_idle_per_origin = max_idle_per_origin
        self._heads: dict[tuple[str, int, int], tuple[httpx2.URL, object, _Head]] = {}
        self._waiting = 0  # exchanges sent and waiting for their response head
        self._held: list[tuple[_Connection, bytes]] = []  # requests to send at the turn's end

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        response = await self.open(
            request.method,
            request.url,
            request.headers.multi_items(),
            await request.aread(),
            timeouts,
            request,
        )
        return httpx2.Response(
            response.status,
            headers=response.items,
            stream=response.body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    async def open(
        self,
        method: str,
        url: httpx2.URL,
        headers: Iterable[tuple[str, str]],
        content: bytes,
        timeouts: Mapping[str, float | None],
        request: httpx2.Request | None = None,
    ) -> LeanResponse:
        """Send one request; return once its head has arrived (the body is read on demand).

        ``headers`` are sent as given, with ``host`` and ``content-length`` added when
        absent. ``request`` is only what the raised httpx2 exceptions carry.
        """
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        payload = _framed(self._head(method, url, headers), method, content)
        call = _Call(method, url, request, timeouts)
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.usable:
                conn.close()
                continue
            try:
                return await self._exchange(conn, origin, call, payload, True)
            except _Stale:
                conn.close()  # closed by the server as we took it: once more, on a new one
                break
        conn = await self._connect(origin, request, timeouts.get("connect"))
        try:
            return await self._exchange(conn, origin, call, payload, False)
        except _Stale:
            raise httpx2.RemoteProtocolError(
                "server closed the connection without a response", request=request
            ) from None

    def _head(self, method: str, url: httpx2.URL, headers: Iterable[tuple[str, str]]) -> _Head:
        """:func:`_head`, serialized once per (method, URL, headers) a caller reuses: a
        provider's calls pass the same URL and header tuple each time. Entries hold their
        URL and headers, so an id in a key is never another object's."""
        if type(headers) is not tuple:
            return _head(method, url, headers)
        key = (method, id(url), id(headers))
        hit = self._heads.get(key)
        if hit is not None and hit[0] is url and hit[1] is headers:
            return hit[2]
        head = _head(method, url, headers)
        if len(self._heads) >= _MAX_HEADS:
            self._heads.clear()
        self._heads[key] = (url, headers, head)
        return head

    async def _connect(
        self, origin: Origin, request: httpx2.Request | None, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = httpx2.create_ssl_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=context
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port}", request=request) from None
        except OSError as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return conn

    async def _exchange(
        self, conn: _Connection, origin: Origin, call: _Call, payload: bytes, reused: bool
    ) -> LeanResponse:
        request = call.request
        conn.begin()
        if self._waiting and len(payload) <= _HELD_MOST:
            if not self._held:
                asyncio.get_running_loop().call_soon(self._send_held)
            self._held.append((conn, payload))
        else:
            try:
                await conn.send(payload, call.timeouts.get("write"))
            except _TimedOut:
                raise httpx2.WriteTimeout("sending the request", request=request) from None
        read_timeout = call.timeouts.get("read")
        self._waiting += 1
        try:
            while not conn.head:
                if conn.broken is not None:
                    raise httpx2.RemoteProtocolError(conn.broken, request=request)
                if conn.spent:
                    if not conn.received:
                        raise _Stale
                    if conn.lost is not None:
                        raise httpx2.ReadError(
                            str(conn.lost) or type(conn.lost).__name__, request=request
                        )
                    raise httpx2.RemoteProtocolError("truncated response head", request=request)
                try:
                    await conn.wait(read_timeout)
                except _TimedOut:
                    raise httpx2.ReadTimeout("waiting for the response", request=request) from None
        finally:
            self._waiting -= 1
        status = conn.status
        if log.isEnabledFor(logging.DEBUG):
            scheme, host, port = origin
            log.debug(
                "%s %s://%s:%d%s -> %d (%s connection)",
                call.method,
                scheme,
                host,
                port,
                call.url.path,
                status,
                "reused" if reused else "new",
            )
        raw = conn.raw
        headers: dict[str, str] = {}
        for raw_name, raw_value in raw:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = _Body(self, conn, origin, call, headers, status)
        return LeanResponse(status, conn.reason, raw, headers, body)

    def _send_held(self) -> None:
        """Send the requests held this turn; one whose connection closed meanwhile is not
        sent, and its exchange sees the close."""
        held, self._held = self._held, []
        for conn, payload in held:
            if conn.usable:
                conn.transport.write(payload)  # type: ignore[union-attr]

    def _release(self, origin: Origin, conn: _Connection) -> None:
        conn.busy = False
        idle = self._idle.setdefault(origin, [])
        if conn.usable and len(idle) < self.max_idle_per_origin:
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _Call:
    """What an exchange needs of its request besides the bytes."""

    __slots__ = ("method", "request", "timeouts", "url")

    def __init__(
        self,
        method: str,
        url: httpx2.URL,
        request: httpx2.Request | None,
        timeouts: Mapping[str, float | None],
    ) -> None:
        self.method = method
        self.url = url
        self.request = request
        self.timeouts = timeouts


class LeanResponse:
    """A response whose head has arrived: ``status``, ``reason``, ``headers`` (lower-case
    names, repeated ones joined with ``", "``; ``items`` as received) and the body, read
    on demand with :meth:`read` or :meth:`aiter_bytes`, or abandoned with :meth:`aclose`."""

    __slots__ = ("_content", "_raw", "body", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: bytes,
        raw: list[tuple[bytes, bytes]],
        headers: dict[str, str],
        body: _Body,
    ) -> None:
        self.status = status
        self.reason = reason
        self._raw = raw
        self.headers = headers
        self.body = body
        self._content: bytes | None = None

    @property
    def items(self) -> list[tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw]

    async def read(self) -> bytes:
        if self._content is None:
            self._content = await self.body.read()
        return self._content

    def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        return self.body.__aiter__()

    async def aclose(self) -> None:
        await self.body.aclose()


def _head(method: str, url: httpx2.URL, headers: Iterable[tuple[str, str]]) -> _Head:
    """The request line and header lines, and whether the headers give the body's size."""
    lines = [f"{method} {url.raw_path.decode('ascii')} HTTP/1.1"]
    names = set()
    for name, value in headers:
        names.add(name.lower())
        lines.append(f"{name}: {value}")
    if "host" not in names:
        lines.insert(1, f"host: {url.netloc.decode('ascii')}")
    sized = bool(names & {"content-length", "transfer-encoding"})
    return ("\r\n".join(lines) + "\r\n").encode("latin-1"), sized


def _framed(head: _Head, method: str, content: bytes) -> bytes:
    lines, sized = head
    if (content or method in _BODIED) and not sized:  # an empty POST says so too
        return b"%scontent-length: %d\r\n\r\n%s" % (lines, len(content), content)
    return lines + b"\r\n" + content


class _Body(httpx2.AsyncByteStream):
    """A response body, read as it is consumed; the connection goes back to the pool
    once the whole response has arrived and is read, and is closed if the body is
    abandoned before its end came."""

    def __init__(
        self,
        transport: LeanTransport,
        conn: _Connection,
        origin: Origin,
        call: _Call,
        headers: Mapping[str, str],
        status: int,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._origin = origin
        self._request = call.request
        self._timeout = call.timeouts.get("read")
        self._headers = headers
        # the parser cannot know a HEAD's reply has no body: it is taken as whole now
        self._empty = call.method == "HEAD" or status in (204, 304)
        # (the parser keeps no connection whose body ends with its close)
        self._keep = conn.keep_alive and call.method != "HEAD"

    async def read(self) -> bytes:
        """The whole body (a short one usually came with its head: no wait at all)."""
        conn = self._conn
        if conn is None:
            return b""
        if not conn.complete and not self._empty:
            return b"".join([part async for part in self])
        content = b"" if self._empty else conn.take()
        self._done(conn)
        return content

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        conn = self._conn
        if conn is None:
            return
        while not self._empty:
            part = conn.take(_PART)
            if part:
                yield part
                if self._conn is not conn:
                    return  # closed meanwhile: the connection may already serve another call
                continue
            if conn.complete:
                break
            if conn.spent:
                if self._until_close() and conn.broken is None and conn.lost is None:
                    break  # the close was the body's end
                raise self._failed()
            try:
                await conn.wait(self._timeout)
            except _TimedOut:
                self._drop()
                raise httpx2.ReadTimeout("waiting for the body", request=self._request) from None
        self._done(conn)

    def _until_close(self) -> bool:
        """Whether the body ends with the connection: neither a length nor chunked."""
        headers = self._headers
        return not (
            "chunked" in headers.get("transfer-encoding", "").lower()
            or headers.get("content-length", "").isdigit()
        )

    def _failed(self) -> httpx2.TransportError:
        """The httpx2 error for a body broken off; the connection is dropped."""
        conn = self._conn
        self._drop()
        if conn is not None and conn.broken is not None:
            return httpx2.RemoteProtocolError(conn.broken, request=self._request)
        if conn is not None and conn.lost is not None:
            lost = conn.lost
            return httpx2.ReadError(str(lost) or type(lost).__name__, request=self._request)
        return httpx2.RemoteProtocolError(
            "response body broken off (the connection closed)", request=self._request
        )

    def _done(self, conn: _Connection) -> None:
        self._conn = None
        if self._keep and conn.complete:
            self._transport._release(self._origin, conn)
        else:
            conn.close()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        """Stop reading. A response that has arrived whole (a stream decoder stops at its
        end marker, before asking past the body's last part) frees its connection for
        reuse, read or not; else the connection is closed: it cannot be reused."""
        conn = self._conn
        if conn is not None and (conn.complete or self._empty) and not conn.spent:
            conn.parts = []
            self._done(conn)
        else:
            self._drop()
