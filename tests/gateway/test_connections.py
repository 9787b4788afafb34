"""Callers that misbehave on the wire: bodies cut short, slow heads, too many connections."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.support import Gateway, running
from polyroute.cli import cli
from polyroute.testing import Fleet

CUT_SHORT = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
    b"content-length: 1000\r\n\r\n" + b'{"model": "gpt-4o-mini", "messages": ['
)


def metric_line(gw: Gateway, status: int) -> str | None:
    text = gw.http().get("/metrics").text
    for line in text.splitlines():
        if line.startswith("polyroute_gateway_requests_total{") and f'status="{status}"' in line:
            return line
    return None


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "polyroute.access" and "/v1/chat/completions" in r.getMessage()
    ]


def test_a_caller_leaving_mid_body_is_a_499_and_one_log_line(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="polyroute.access"),
        caplog.at_level(logging.INFO, logger="uvicorn.error"),  # both: it sets the handler's level
    ):
        with socket.create_connection(("127.0.0.1", gateway.server.port)) as s:
            s.sendall(CUT_SHORT)
            time.sleep(0.1)  # the app is reading the body
        deadline = time.monotonic() + 10
        while not access_lines(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
    [access] = access_lines(caplog)
    line = metric_line(gateway, 499)
    assert line is not None and 'endpoint="/v1/chat/completions"' in line
    assert metric_line(gateway, 500) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no traceback
    assert '"status":499' in access and '"error":"client_closed"' in access
    assert gateway.fleet["openai"].calls == 0 and gateway.fleet["anthropic"].calls == 0


async def _trickle(port: int, opened: list[int], closed: list[int], stop: asyncio.Event) -> None:
    """A caller that sends a head one header line at a time and never finishes it."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        closed.append(1)
        return
    opened.append(1)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
        while not stop.is_set():
            try:
                if await asyncio.wait_for(reader.read(1024), 0.2) == b"":
                    break  # the server closed it
            except TimeoutError:
                writer.write(b"x-trickle: 1\r\n")
                await writer.drain()
    except OSError:
        pass
    else:
        if stop.is_set():
            return
    finally:
        writer.close()
    closed.append(1)


def test_slow_callers_are_cut_off_and_never_crowd_out_the_others(fleet: Fleet) -> None:
    with running(fleet, read_timeout_s=1, max_connections=50) as gw:

        async def scenario() -> tuple[int, int, list[int]]:
            opened: list[int] = []
            closed: list[int] = []
            stop = asyncio.Event()
            slow = [
                asyncio.create_task(_trickle(gw.server.port, opened, closed, stop))
                for _ in range(200)
            ]
            await asyncio.sleep(0.3)  # all 200 have tried: at most 50 are held
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            statuses = []
            async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
                for _ in range(20):
                    r = await http.post("/v1/chat/completions", json=body)
                    statuses.append(r.status_code)
            # past the read timeout, every slow caller is gone (evicted or timed out)
            deadline = time.monotonic() + 5
            while len(closed) < 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*slow)
            return len(opened), len(closed), statuses

        opened, closed, statuses = asyncio.run(scenario())
    assert statuses == [200] * 20
    assert opened == 200 and closed == 200


def test_a_body_that_stops_coming_is_cut_off_as_a_408(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        running(fleet, read_timeout_s=0.5) as gw,
        caplog.at_level(logging.INFO, logger="polyroute.access"),
        socket.create_connection(("127.0.0.1", gw.server.port)) as s,
    ):
        s.sendall(CUT_SHORT)
        s.settimeout(5)
        assert s.recv(1024) == b""  # closed by the server, without an answer
        deadline = time.monotonic() + 5
        while not access_lines(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
        [access] = access_lines(caplog)
        assert '"status":408' in access and '"error":"read_timeout"' in access
        assert metric_line(gw, 408) is not None


def test_a_kept_alive_connection_has_the_same_deadline_for_its_next_request(
    fleet: Fleet,
) -> None:
    with (
        running(fleet, read_timeout_s=0.5) as gw,
        socket.create_connection(("127.0.0.1", gw.server.port)) as s,
    ):
        s.settimeout(5)
        s.sendall(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
        assert _one_response(s).startswith(b"HTTP/1.1 200 ")
        s.sendall(b"GET /health HTTP/1.1\r\n")  # and the rest never comes
        assert s.recv(4096) == b""


def _one_response(s: socket.socket) -> bytes:
    """A whole response with a content-length body (it may come in several segments)."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = s.recv(4096)
        assert part, f"the gateway closed the connection: {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length: *(\d+)", head)
    assert found is not None
    length = int(found[1])
    while len(body) < length:
        body += s.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_head_too_large_is_a_431(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.server.port)) as s:
        s.settimeout(5)
        s.sendall(b"GET /health HTTP/1.1\r\nhost: gw\r\n")
        for _ in range(80):
            s.sendall(b"x-padding: " + b"a" * 1000 + b"\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 431 ")


def test_serve_on_a_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "polyroute.toml"
        config.write_text("[health]\ninterval_s = 0\n")
        result = CliRunner().invoke(cli, ["--config", str(config), "serve", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"polyroute: error: port {port} on 127.0.0.1 is in use: Address already in use\n"
    )


def test_an_idle_kept_alive_connection_outlives_the_sdks_own_keep_alive(fleet: Fleet) -> None:
    """httpx (under the OpenAI and Anthropic SDKs) reuses a connection idle up to 5 s: the
    gateway must not close it first (uvicorn's default is those same 5 s, a race the
    caller loses as "server disconnected without sending a response")."""
    from polyroute.gateway._server import KEEP_ALIVE_S

    assert KEEP_ALIVE_S > 15  # aiohttp keeps its connections 15 s
    with (
        running(fleet) as gw,
        socket.create_connection(("127.0.0.1", gw.server.port)) as s,
    ):
        s.settimeout(5)
        s.sendall(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
        assert _one_response(s).startswith(b"HTTP/1.1 200 ")
        time.sleep(5.5)
        s.sendall(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
        assert _one_response(s).startswith(b"HTTP/1.1 200 ")
