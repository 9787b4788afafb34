"""Callers that misbehave on the wire: bodies cut short, slow heads, too many connections."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from gateway.support import Gateway

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
