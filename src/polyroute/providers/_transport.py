"""A lean HTTP/1.1 transport for the pooled client: asyncio streams, keep-alive, no anyio.

httpx2's default transport (httpcore2 over anyio) spends most of a loopback call's
CPU on pool bookkeeping: each request polls every idle connection's socket and
walks anyio's typed attributes. Measured on the gateway's path (a chat completion
to a local upstream, one process): about 800 µs of CPU per call, which alone
caps a gateway worker near 1,200 requests/s. This transport keeps httpx2's API
(requests, responses, exceptions, so error mapping and the ``MockTransport``
test seam are unchanged) and does only what polyroute's calls need: HTTP/1.1 with
keep-alive, ``content-length``, chunked and close-delimited bodies, streamed
responses, TLS, and the client's connect/read/write timeouts.

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
from collections.abc import AsyncIterator

import httpx2

log = logging.getLogger("polyroute.http")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_HEAD = 64 * 1024
_READ = 64 * 1024


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

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        payload = _serialize(request, await request.aread())
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.usable:
                conn.close()
                continue
            try:
                return await self._exchange(conn, origin, request, payload, timeouts, True)
            except _Stale:
                conn.close()  # closed by the server as we took it: once more, on a new one
                break
        conn = await self._connect(origin, request, timeouts.get("connect"))
        try:
            return await self._exchange(conn, origin, request, payload, timeouts, False)
        except _Stale:
            raise httpx2.RemoteProtocolError(
                "server closed the connection without a response", request=request
            ) from None

    async def _connect(
        self, origin: Origin, request: httpx2.Request, timeout: float | None
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
        self,
        conn: _Connection,
        origin: Origin,
        request: httpx2.Request,
        payload: bytes,
        timeouts: dict[str, float | None],
        reused: bool,
    ) -> httpx2.Response:
        read_timeout = timeouts.get("read")
        try:
            conn.writer.write(payload)
            async with asyncio.timeout(timeouts.get("write")):
                await conn.writer.drain()
        except TimeoutError:
            conn.close()
            raise httpx2.WriteTimeout("sending the request", request=request) from None
        except OSError:
            raise _Stale from None
        try:
            async with asyncio.timeout(read_timeout):
                head = await conn.reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
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
        status, headers, reason = _parse_head(head, request)
        if log.isEnabledFor(logging.DEBUG):
            url = request.url
            log.debug(
                "%s %s://%s%s -> %d (%s connection)",
                request.method,
                url.scheme,
                url.netloc.decode("ascii"),
                url.path,
                status,
                "reused" if reused else "new",
            )
        body = _Body(self, conn, origin, request, read_timeout, headers, status)
        return httpx2.Response(
            status,
            headers=headers,
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

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


class _Stale(Exception):
    """A reused connection failed before any response byte: the server had closed it."""


def _serialize(request: httpx2.Request, content: bytes) -> bytes:
    url = request.url
    target = url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1"]
    headers = request.headers
    if "host" not in headers:
        lines.append(f"host: {url.netloc.decode('ascii')}")
    for name, value in headers.multi_items():
        lines.append(f"{name}: {value}")
    if content and "content-length" not in headers and "transfer-encoding" not in headers:
        lines.append(f"content-length: {len(content)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


def _parse_head(head: bytes, request: httpx2.Request) -> tuple[int, list[tuple[str, str]], bytes]:
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
        request: httpx2.Request,
        timeout: float | None,
        headers: list[tuple[str, str]],
        status: int,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._origin = origin
        self._request = request
        self._timeout = timeout
        self._length: int | None = None
        self._chunked = False
        self._keep = True
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length" and value.isdigit():
                self._length = int(value)
            elif lower == "transfer-encoding" and "chunked" in value.lower():
                self._chunked = True
            elif lower == "connection" and "close" in value.lower():
                self._keep = False
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._length = 0
        if self._chunked:
            self._length = None
        elif self._length is None:
            self._keep = False  # delimited by the close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            async for part in self._parts(conn.reader):
                yield part
        except TimeoutError:
            self._drop()
            raise httpx2.ReadTimeout("waiting for the body", request=self._request) from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self._drop()
            raise httpx2.RemoteProtocolError(
                f"response body broken off ({type(exc).__name__})", request=self._request
            ) from None
        except OSError as exc:
            self._drop()
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=self._request) from None
        self._conn = None
        if self._keep:
            self._transport._release(self._origin, conn)
        else:
            conn.close()

    async def _parts(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        timeout = self._timeout
        if self._chunked:
            while True:
                async with asyncio.timeout(timeout):
                    line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    async with asyncio.timeout(timeout):
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass  # trailers
                    return
                async with asyncio.timeout(timeout):
                    chunk = await reader.readexactly(size + 2)
                yield chunk[:-2]
        elif self._length is not None:
            left = self._length
            while left:
                async with asyncio.timeout(timeout):
                    chunk = await reader.read(min(left, _READ))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(chunk)
                yield chunk
        else:
            while True:
                async with asyncio.timeout(timeout):
                    chunk = await reader.read(_READ)
                if not chunk:
                    return
                yield chunk

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        self._drop()  # not read to its end: the connection cannot be reused
