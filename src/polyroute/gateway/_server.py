"""The gateway on uvicorn, guarded against callers that hold connections without using them.

uvicorn waits for a request's head for ever (its keep-alive timeout runs only between
requests) and accepts connections until the process runs out of file descriptors, so a
thousand callers trickling header bytes stop everyone else. Here:

- a caller has ``read_timeout_s`` to send a request's head and body, from connecting
  (or from the first byte of its next request on a kept-alive connection); then it is
  closed, and a request whose body was still coming is logged as a 408;
- a head over :data:`MAX_HEAD_BYTES` is refused with 431;
- a worker holds at most ``max_connections`` (and never more than half its file
  descriptors: upstreams and the ledger need the rest). Past it, the connections that
  have waited longest without a request in progress are closed to make room, so a new
  caller is served; when every connection has a request in progress, the new one is
  closed at once.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import resource
import socket
from typing import TYPE_CHECKING, Any, cast

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from polyroute.gateway._observe import READ_TIMED_OUT

if TYPE_CHECKING:
    from uvicorn.server import Protocols

MAX_HEAD_BYTES = 64 * 1024
"""A request line and headers larger than this are refused (uvicorn's h11 allows 16 KiB;
httptools has no limit of its own)."""

LINGER_S = 1.0
"""After a 431, how long the rest of the caller's head is read and dropped before closing."""

_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-length: 0\r\nconnection: close\r\n\r\n"
)


KEEP_ALIVE_S = 75
"""How long an idle kept-alive connection stays open. Longer than clients keep theirs
(httpx, under the OpenAI and Anthropic SDKs: 5 s; aiohttp: 15 s; Node: 4-5 s): at
uvicorn's 5 s a client could send on a connection in the very moment the server closed
it, and get "server disconnected without sending a response". Idle connections are the
first closed when a worker's ``max_connections`` are all taken."""


class ServeConfig(uvicorn.Config):
    """uvicorn's config with the guard's two settings (it travels to each worker process)."""

    def __init__(
        self, app: Any, *, read_timeout_s: float, max_connections: int, **options: Any
    ) -> None:
        options.setdefault("timeout_keep_alive", KEEP_ALIVE_S)
        super().__init__(app, http=protocol_path(), **options)
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections


class _Guard(asyncio.Protocol):
    """The guard over one of uvicorn's HTTP protocols (a mixin: see the module docs).

    A connection is *waiting* while no request of it is in progress: before its first
    request's head is complete, and between requests. Waiting connections are the ones
    closed to make room, oldest first.
    """

    # uvicorn's protocols set these
    config: uvicorn.Config
    connections: set[Protocols]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    _deadline: asyncio.TimerHandle | None = None
    _armed_for: Any = None
    """The request (uvicorn's cycle) in progress when the deadline was set: the one it is
    not for."""
    _since = 0.0
    _head_bytes = 0
    _refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are one
        super().connection_made(_Corked(cast("asyncio.Transport", transport), self.loop))
        self._arm()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # a reply's last write leaves now, not after the app's work that follows it
        transport = self.transport
        if isinstance(transport, _Corked):
            transport.flush()
        super().on_response_complete()  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._refused:  # the rest of a refused head: read and dropped until the close
            return
        waiting = self._waiting()
        if waiting:
            if self._deadline is None:  # a kept-alive connection's next request begins
                self._arm()
            self._head_bytes += len(data)
        super().data_received(data)
        cycle = self.cycle
        if cycle is self._armed_for:  # still no head: this was part of one
            if waiting and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse_head()
        elif self._deadline is not None and not cycle.more_body:
            self._disarm()  # head and body are in

    def _refuse_head(self) -> None:
        # a lingering close: closing with the caller's bytes unread would make the kernel
        # reset the connection, and the reset can destroy the 431 before it is read
        self._refused = True
        self.transport.write(_HEAD_TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def _waiting(self) -> bool:
        cycle = self.cycle
        return cycle is None or bool(cycle.response_complete)

    def _arm(self) -> None:
        self._since = self.loop.time()
        self._head_bytes = 0
        self._armed_for = self.cycle
        self._deadline = self.loop.call_later(self._timeout_s(), self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timeout_s(self) -> float:
        config = self.config
        assert isinstance(config, ServeConfig)
        return config.read_timeout_s

    def _too_slow(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not self._armed_for and not cycle.response_complete:
            cycle.scope[READ_TIMED_OUT] = True  # the app sees a disconnect: logged as 408
        self.transport.close()

    def _make_room(self) -> None:
        config = self.config
        assert isinstance(config, ServeConfig)
        bound = config.max_connections
        if len(self.connections) <= bound:
            return
        live = [c for c in self.connections if isinstance(c, _Guard) and c._open()]
        excess = len(live) - bound
        if excess <= 0:  # the rest are closing already
            return
        # a few more than needed, so the next arrivals need no scan
        waiting = [c for c in live if c is not self and c._waiting()]
        victims = heapq.nsmallest(excess + bound // 16, waiting, key=_waited_since)
        for victim in victims:
            victim.transport.close()
        if len(victims) < excess:  # every other connection has a request in progress
            self.transport.close()

    def _open(self) -> bool:
        return not self.transport.is_closing()


class _Corked(asyncio.Transport):
    """A connection's transport whose writes of one turn of the event loop leave as one.

    uvicorn writes a response's head and its body separately, and a stream's frames one by
    one: each write is a system call, a good part of a request's cost on loopback. Here the
    writes made before the app next waits are joined and sent at the start of the loop's
    next turn, so nothing waits on anything but the current turn's end (a frame is out
    before the stream reads the upstream again). A response's last write is sent at once
    (:meth:`_Guard.on_response_complete`): the app's work after it (the access log,
    metrics) would otherwise delay the reply.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._parts:
            self._loop.call_soon(self.flush)
        self._parts.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what was written so far (nothing, if that was sent already)."""
        parts = self._parts
        if parts:
            self._parts = []
            self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._parts = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._parts))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


def _waited_since(connection: _Guard) -> float:
    return connection._since


class GuardedH11(_Guard, H11Protocol):
    """uvicorn's h11 protocol, guarded."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without the `server` extra: h11 serves
    _FAST = "GuardedH11"
else:
    _FAST = "GuardedHttpTools"

    class GuardedHttpTools(_Guard, HttpToolsProtocol):
        """uvicorn's httptools protocol, guarded."""


def protocol_path() -> str:
    """The guarded protocol uvicorn should import: over httptools when it is installed."""
    return f"{__name__}:{_FAST}"


def connection_bound(max_connections: int) -> int:
    """``max_connections``, lowered to half of this process's file descriptors after raising
    their soft limit as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * max_connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft // 2))


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any worker starts (``OSError`` when it cannot be:
    the caller says why in one line)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and this one's is 0:
        # set here, accepted connections inherit it (else Nagle holds each stream frame back
        # until the caller's delayed ACK, up to 40 ms)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)  # for worker processes
    return sock


def run(config: ServeConfig, sock: socket.socket) -> bool:
    """Serve on ``sock`` until stopped; whether the server started (a worker's or the app's
    startup failure is logged by uvicorn)."""
    if config.workers == 1:
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        return server.started
    from uvicorn.supervisors import Multiprocess

    # older uvicorn took the server's run method; newer builds a server in each worker
    if "target" in inspect.signature(Multiprocess).parameters:
        server = uvicorn.Server(config)
        supervisor = Multiprocess(config, target=server.run, sockets=[sock])  # type: ignore[call-arg]
    else:
        supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    return True
