"""A lean HTTP/1.1 transport for the pooled client: asyncio streams, keep-alive, no anyio.

httpx2's default transport (httpcore2 over anyio) spends most of a loopback call's
CPU on pool bookkeeping: each request polls every idle connection's socket and
walks anyio's typed attributes. Measured on the gateway's path (a chat completion
to a local upstream, one process): about 800 µs of CPU per call, which alone
caps a gateway worker near 1,200 requests/s. This transport does only what
polyroute's calls need: HTTP/1.1 with keep-alive, ``content-length``, chunked and
close-delimited bodies, streamed responses, TLS, and connect/read/write timeouts.
It raises httpx2's exceptions, so one error mapping serves it and any other transport.

Two ways in: :meth:`LeanTransport.open`, which :class:`~polyroute.providers._http.HttpPool`
calls directly (httpx2's client layer, its request and response models, cost about as
much CPU again as the exchange itself), and httpx2's ``handle_async_request``, so it
also works under an ``httpx2.AsyncClient``.

Idle connections are kept per origin, most recent first; one the server has
closed is seen at once (the stream reader holds its EOF) and dropped. A request
that fails on a reused connection before any response byte arrives is sent once
more on a new connection: the server closed it while we were choosing it.
Proxies are not spoken: :class:`HttpPool` keeps httpx2's own transport when a
proxy is configured in the environment. At DEBUG, the ``polyroute.http`` logger
notes each exchange: method, origin and path, status, and whether the connection
was reused (never headers, a query or a body).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar, cast

import httpx2

from polyroute._steps import Rest

log = logging.getLogger("polyroute.http")
T = TypeVar("T")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODIED = frozenset({"POST", "PUT", "PATCH"})
_MAX_HEAD = 64 * 1024
_READ = 64 * 1024
_MAX_HEADS = 64
"""Request heads kept serialized (a provider's paths times its header sets: a handful)."""

_Head = tuple[bytes, bool]


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


Origin = tuple[str, str, int]


class LeanTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with a keep-alive pool (see module docs)."""

    def __init__(self, *, max_idle_per_origin: int = 200) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self.max_idle_per_origin = max_idle_per_origin
        self._heads: dict[tuple[str, int, int], tuple[httpx2.URL, object, _Head]] = {}

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
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, limit=_MAX_HEAD
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"connecting to {host}:{port}", request=request) from None
        except OSError as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, origin: Origin, call: _Call, payload: bytes, reused: bool
    ) -> LeanResponse:
        request = call.request
        read_timeout = call.timeouts.get("read")
        try:
            conn.writer.write(payload)
            if conn.writer.transport.get_write_buffer_size():  # else drain has nothing to wait for
                async with asyncio.timeout(call.timeouts.get("write")):
                    await conn.writer.drain()
        except TimeoutError:
            conn.close()
            raise httpx2.WriteTimeout("sending the request", request=request) from None
        except OSError:
            raise _Stale from None
        reader = conn.reader
        try:
            # never buffered yet: no _within's step
            head = await _deadline(read_timeout, reader, reader.readuntil(b"\r\n\r\n"))
        except _TimedOut:
            conn.close()
            raise httpx2.ReadTimeout("waiting for the response", request=request) from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale from None
            conn.close()
            raise httpx2.RemoteProtocolError("truncated response head", request=request) from None
        except asyncio.LimitOverrunError:
            conn.close()
            raise httpx2.RemoteProtocolError("response head too large", request=request) from None
        except OSError as exc:
            conn.close()
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from None
        status, items, reason = _parse_head(head, request)
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
        headers: dict[str, str] = {}
        for name, value in items:
            lower = name.lower()
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        body = _Body(self, conn, origin, call, headers, status)
        return LeanResponse(status, reason, items, headers, body)

    def _release(self, origin: Origin, conn: _Connection) -> None:
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


class _TimedOut(TimeoutError):
    """Set into a connection's reader when a read of it is overdue."""


def _expire(reader: asyncio.StreamReader) -> None:
    reader.set_exception(_TimedOut())


def _at_once(read: Coroutine[Any, Any, T]) -> T | None:
    """What ``read`` gives without waiting; ``None`` (and ``read`` closed) if it must wait."""
    try:
        read.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    read.close()
    return None


async def _within(
    timeout: float | None, reader: asyncio.StreamReader, read: Coroutine[Any, Any, T]
) -> T:
    """``await read``, a read of ``reader``, within ``timeout`` (see :func:`_deadline`),
    whose timer is set only if the read must wait: what is already buffered (a short body
    comes with its head) is taken at once."""
    try:
        waiting = read.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    return await _deadline(timeout, reader, Rest(read, waiting))


async def _deadline(timeout: float | None, reader: asyncio.StreamReader, read: Awaitable[T]) -> T:
    """``await read``, a read of ``reader``, within ``timeout``, else :class:`_TimedOut`.

    The timer is a plain one that fails ``reader``: about a tenth of what
    ``asyncio.timeout`` costs (its 28k instructions were a fiftieth of a served call,
    callgrind), and a stream from a vendor waits on nearly every read. A reader failed
    this way is spent, even when the timer fired just as the data came in: its connection
    must not be used again."""
    if timeout is None:
        return await read
    timer = asyncio.get_running_loop().call_later(timeout, _expire, reader)
    try:
        got = await read
    finally:
        timer.cancel()
    if reader.exception() is not None:  # the timer fired as the data came in
        raise _TimedOut
    return got


_BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
"""What a broken body read raises (``TimeoutError`` is an ``OSError``)."""


class _Stale(Exception):
    """A reused connection failed before any response byte: the server had closed it."""


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

    __slots__ = ("_content", "body", "headers", "items", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: bytes,
        items: list[tuple[str, str]],
        headers: dict[str, str],
        body: _Body,
    ) -> None:
        self.status = status
        self.reason = reason
        self.items = items
        self.headers = headers
        self.body = body
        self._content: bytes | None = None

    async def read(self) -> bytes:
        if self._content is None:
            self._content = await self.body.read()
        return self._content

    def aiter_bytes(self) -> AsyncIterator[bytes]:
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


def _parse_head(
    head: bytes, request: httpx2.Request | None
) -> tuple[int, list[tuple[str, str]], bytes]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise httpx2.RemoteProtocolError(f"bad status line {lines[0][:80]!r}", request=request)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise httpx2.RemoteProtocolError(f"bad header line {line[:80]!r}", request=request)
        headers.append((name.strip(), value.strip()))
    reason = parts[2].encode("latin-1") if len(parts) > 2 else b""
    return int(parts[1]), headers, reason


class _Body(httpx2.AsyncByteStream):
    """A response body, read as it is consumed; the connection goes back to the pool
    once it is read to its end, and is closed if the body is abandoned."""

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
        self._length: int | None = None
        self._left: int | None = None  # of a length-delimited body, what is still unread
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._keep = "close" not in headers.get("connection", "").lower()
        length = headers.get("content-length", "")
        if length.isdigit():
            self._length = int(length)
        if call.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._length = 0
        if self._chunked:
            self._length = None
        elif self._length is None:
            self._keep = False  # delimited by the close

    async def read(self) -> bytes:
        """The whole body; one read when it is short and its length known (the read timeout
        is per read, so a long body is still read in parts)."""
        conn = self._conn
        if conn is None or self._length is None or self._length > _READ:
            return b"".join([part async for part in self])
        try:
            content = await _within(
                self._timeout, conn.reader, conn.reader.readexactly(self._length)
            )
        except _BROKEN as exc:
            raise self._failed(exc) from None
        self._done(conn)
        return content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            async for part in self._parts(conn.reader):
                yield part
                if self._conn is not conn:
                    return  # closed meanwhile: the connection may already serve another call
        except _BROKEN as exc:
            raise self._failed(exc) from None
        self._done(conn)

    def _failed(self, exc: Exception) -> httpx2.TransportError:
        """The httpx2 error for a broken read; the connection is dropped."""
        self._drop()
        if isinstance(exc, TimeoutError):
            return httpx2.ReadTimeout("waiting for the body", request=self._request)
        if isinstance(exc, OSError):
            return httpx2.ReadError(str(exc) or type(exc).__name__, request=self._request)
        return httpx2.RemoteProtocolError(
            f"response body broken off ({type(exc).__name__})", request=self._request
        )

    def _done(self, conn: _Connection) -> None:
        self._conn = None
        if self._keep:
            self._transport._release(self._origin, conn)
        else:
            conn.close()

    async def _parts(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        timeout = self._timeout
        if self._chunked:
            while True:
                line = await _within(timeout, reader, reader.readuntil(b"\r\n"))
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    while await _within(timeout, reader, reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    return
                chunk = await _within(timeout, reader, reader.readexactly(size + 2))
                yield chunk[:-2]
        elif self._length is not None:
            left = self._left = self._length
            while left:
                chunk = await _within(timeout, reader, reader.read(min(left, _READ)))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                left = self._left = left - len(chunk)
                yield chunk
        else:
            while True:
                chunk = await _within(timeout, reader, reader.read(_READ))
                if not chunk:
                    return
                yield chunk

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        """Stop reading. A body whose every byte was read, but whose reader stopped before
        asking past its last part (a stream decoder stops at its end marker), frees its
        connection for reuse; else the connection is closed: it cannot be reused."""
        conn = self._conn
        if conn is not None and self._ended(conn.reader):
            self._done(conn)
        else:
            self._drop()

    def _ended(self, reader: asyncio.StreamReader) -> bool:
        """Whether nothing of the body is left: all of its length was read, or (chunked)
        its last-chunk line and trailers are already here. Never waits for more bytes."""
        if self._length is not None:
            return self._left == 0
        if not self._chunked:
            return False  # delimited by the close
        try:
            line = _at_once(reader.readuntil(b"\r\n"))
            if line is None or int(line.split(b";", 1)[0], 16):
                return False  # more data, or not here yet: the body really was abandoned
            while (line := _at_once(reader.readuntil(b"\r\n"))) != b"\r\n":
                if line is None:
                    return False
        except _BROKEN:
            return False
        return True
