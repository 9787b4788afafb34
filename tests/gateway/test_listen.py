"""The gateway's listening socket hands out connections without Nagle."""

from __future__ import annotations

import socket

from polyroute.gateway._server import listen


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
