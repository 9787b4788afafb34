"""The gateway on uvicorn: its process, workers and shutdown, with our own HTTP protocol.

uvicorn waits for a request's head for ever (its keep-alive timeout runs only between
requests) and accepts connections until the process runs out of file descriptors, so a
thousand callers trickling header bytes stop everyone else. Each connection is therefore
served by :class:`~polyroute.gateway._http11.Http11`, which guards against them (see its
module) and costs less a request than uvicorn's own protocols.
"""

from __future__ import annotations

import inspect
import resource
import socket
from typing import Any

import uvicorn

KEEP_ALIVE_S = 75
"""How long an idle kept-alive connection stays open. Longer than clients keep theirs
(httpx, under the OpenAI and Anthropic SDKs: 5 s; aiohttp: 15 s; Node: 4-5 s): at
uvicorn's 5 s a client could send on a connection in the very moment the server closed
it, and get "server disconnected without sending a response". Idle connections are the
first closed when a worker's ``max_connections`` are all taken."""


PROTOCOL = "polyroute.gateway._http11:Http11"
"""What uvicorn imports to serve each connection (a path: it travels to worker processes)."""


class ServeConfig(uvicorn.Config):
    """uvicorn's config with the guard's two settings (it travels to each worker process)."""

    def __init__(
        self, app: Any, *, read_timeout_s: float, max_connections: int, **options: Any
    ) -> None:
        options.setdefault("timeout_keep_alive", KEEP_ALIVE_S)
        # Nothing reads the client's address, so uvicorn's X-Forwarded-For middleware
        # would only add a layer to every request.
        options.setdefault("proxy_headers", False)
        super().__init__(app, http=PROTOCOL, **options)
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections


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
