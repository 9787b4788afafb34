"""How a gateway stream's frames reach the socket: frames whose events came in one upstream
read go out as one body message, and none waits for the upstream's next read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.gateway import create_app
from polyroute.ledger._schema import usage
from polyroute.ledger._store import Store
from polyroute.providers._http import HttpPool

KEY = "sk-test-admin"
MODEL = "fixed-openai"


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


HEAD = _chunk({"role": "assistant", "content": ""}) + _chunk({"content": "one "})
TAIL = (
    _chunk({"content": "two "})
    + _chunk({"content": "three"})
    + _chunk({}, "stop")
    + b'data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\n'
    + b"data: [DONE]\n\n"
)


class Upstream:
    """An OpenAI-format upstream answering every stream with ``HEAD``, then, once
    ``release`` is set, ``TAIL`` (each one read)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reads = 0

    async def _body(self) -> AsyncIterator[bytes]:
        self.reads += 1
        yield HEAD
        await self.release.wait()
        self.reads += 1
        yield TAIL

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, content=self._body(), headers=headers)


@asynccontextmanager
async def gateway(
    home: Path, upstream: Upstream | None, **provider: Any
) -> AsyncIterator[tuple[Any, Polyroute]]:
    """The app over ``upstream`` (over the network, with ``provider``'s ``base_url``, if
    ``None``)."""
    settings = {
        "health": {"interval_s": 0},
        "storage": {"url": f"sqlite:///{home / 'ledger.db'}"},
        "providers": {
            "oa": {
                "type": "openai",
                "base_url": "http://openai.invalid/v1",
                "api_key": "env:UPSTREAM_KEY",
                "models": [MODEL],
                **provider,
            }
        },
        "models": {
            MODEL: {
                "provider_type": "openai",
                "input_usd_per_mtok": 1.0,
                "output_usd_per_mtok": 2.0,
            }
        },
    }
    config = Config(validate(settings, "test"), "test", {"UPSTREAM_KEY": "sk-upstream"})
    transport = None if upstream is None else httpx2.MockTransport(upstream)
    pr = Polyroute(config, pool=HttpPool(transport=transport))
    app = create_app(pr, admin_key=KEY, lifecycle=True)
    async with app.router.lifespan_context(app):
        yield app, pr


class Client:
    """One streamed chat completion through the app's ASGI interface; ``parts`` are the
    body messages as they are sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.parts: list[bytes] = []
        self.sent = asyncio.Event()  # set at each body message
        self.status = 0

    def _scope(self, raw: bytes) -> dict[str, Any]:
        headers = [
            (b"host", b"test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            (b"authorization", f"Bearer {KEY}".encode()),
        ]
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }

    async def run(self) -> None:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        raw = json.dumps(body).encode()
        asked = False
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                return
            if message.get("body"):
                self.parts.append(message["body"])
                self.sent.set()
            if not message.get("more_body", False):
                done.set()

        await self.call(self._scope(raw), receive, send)

    async def call(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The app's ASGI call; subclasses stand between it and the caller's channels."""
        await self.app(scope, receive, send)

    def texts(self) -> Iterator[str]:
        for frame in b"".join(self.parts).decode().split("\n\n"):
            if frame.startswith("data: {"):
                for choice in json.loads(frame[6:]).get("choices", ()):
                    text = choice["delta"].get("content")
                    if text:
                        yield text


async def test_a_frame_goes_out_before_the_upstream_is_waited_for(tmp_path: Path) -> None:
    upstream = Upstream()
    async with gateway(tmp_path, upstream) as (app, pr):
        client = Client(app)
        call = asyncio.create_task(client.run())
        await asyncio.wait_for(client.sent.wait(), 10)
        # the upstream stalls after its first read: what that read carried is the client's
        assert upstream.reads == 1 and not call.done()
        assert list(client.texts()) == ["one "]
        upstream.release.set()
        await asyncio.wait_for(call, 10)
        assert client.status == 200
        assert list(client.texts()) == ["one ", "two ", "three"]
        body = b"".join(client.parts)
        assert body.endswith(b"data: [DONE]\n\n")
        assert b'"finish_reason":"stop"' in body
        # frames of one read share a body message; the end's waited for the commit
        assert len(client.parts) <= 3
        (row,) = (await pr.ledger.usage()).rows
        assert (row.requests, row.failed, row.completion_tokens) == (1, 0, 3)
        assert row.cost_usd > 0


class GoneClient(Client):
    """A client whose connection breaks at the first body message."""

    async def call(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_or_fail(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                self.sent.set()
                raise OSError("connection reset by the client")
            await send(message)

        await self.app(scope, receive, send_or_fail)


async def test_a_client_gone_while_the_upstream_is_read_ends_the_stream_recorded(
    tmp_path: Path,
) -> None:
    upstream = Upstream()
    async with gateway(tmp_path, upstream) as (app, pr):
        client = GoneClient(app)
        with pytest.raises(OSError, match="reset by the client"):
            await asyncio.wait_for(client.run(), 10)
        # the read in flight when the write failed was abandoned, never completed
        assert client.sent.is_set() and upstream.reads == 1
        (row,) = await records(pr)
    assert row["status"] == "cancelled" and row["cost_nusd"] > 0  # delivered text charged


@asynccontextmanager
async def stalled_upstream() -> AsyncIterator[str]:
    """An OpenAI-format upstream over the network that sends ``HEAD`` and then nothing;
    its base URL."""
    stalled = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"connection: close\r\n\r\n" + HEAD)
        await writer.drain()
        await stalled.wait()  # until the test ends: the gateway gives up first
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stalled.set()
        server.close()
        await server.wait_closed()


async def records(pr: Polyroute) -> list[dict[str, Any]]:
    def read(store: Store) -> list[dict[str, Any]]:
        with store.read() as c:
            return [dict(x) for x in c.execute(select(usage)).mappings()]

    await pr.ledger.flush()
    return await pr.ledger.run(read)


async def test_an_upstream_stalling_past_its_timeout_after_content_ends_in_an_error_frame(
    tmp_path: Path,
) -> None:
    # the read that times out was started by hand (the frames before it went out first):
    # the timeout still reaches it, so the answer ends in an error frame, recorded as failed
    async with (
        stalled_upstream() as base_url,
        gateway(tmp_path, None, base_url=base_url, timeout_s=0.5) as (app, pr),
    ):
        client = Client(app)
        await asyncio.wait_for(client.run(), 10)
        (row,) = (await pr.ledger.usage()).rows
    body = b"".join(client.parts).decode()
    assert client.status == 200 and list(client.texts()) == ["one "]
    last = json.loads(body.strip().split("\n\n")[-1].removeprefix("data: "))
    assert last["error"]["code"] == "upstream_timeout"  # the read's own timeout, not a cancel
    assert "[DONE]" not in body
    assert (row.requests, row.failed, row.completion_tokens) == (1, 1, 1)


async def test_a_client_gone_while_a_network_read_is_in_flight_is_no_upstream_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the upstream did nothing wrong: the attempt is cancelled, as when a caller stops
    # reading, not failed (which would count against the provider's breaker)
    async with (
        stalled_upstream() as base_url,
        gateway(tmp_path, None, base_url=base_url) as (app, pr),
    ):
        client = GoneClient(app)
        with pytest.raises(OSError, match="reset by the client"):
            await asyncio.wait_for(client.run(), 10)
        (row,) = await records(pr)
        failures = pr.breakers.get("oa").consecutive_failures
    assert (row["provider"], row["status"], row["error_type"]) == ("oa", "cancelled", None)
    assert row["completion_tokens"] > 0  # the delivered text is charged
    assert failures == 0
    assert "stream failed" not in caplog.text  # the caller's failure is no gateway bug


class LeavingClient(Client):
    """A client that hangs up after the first body message: its ``receive`` says so, as
    the server's does when the connection closes."""

    async def call(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        asked = False

        async def receive_or_leave() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return dict(await receive())
            await self.sent.wait()
            return {"type": "http.disconnect"}

        await self.app(scope, receive_or_leave, send)


async def test_a_client_that_hangs_up_ends_the_stream_at_once_recorded(tmp_path: Path) -> None:
    upstream = Upstream()  # stalls after its first read: released never
    async with gateway(tmp_path, upstream) as (app, pr):
        client = LeavingClient(app)
        await asyncio.wait_for(client.run(), 10)  # a hang-up is no error of the app's
        assert upstream.reads == 1
        (row,) = await records(pr)
    assert row["status"] == "cancelled" and row["cost_nusd"] > 0  # delivered text charged


async def test_a_cancellation_from_outside_a_stream_still_cancels_it(tmp_path: Path) -> None:
    # a shutdown's or a timeout's cancellation is not a hang-up: it goes on up
    upstream = Upstream()
    async with gateway(tmp_path, upstream) as (app, pr):
        client = Client(app)
        call = asyncio.create_task(client.run())
        await asyncio.wait_for(client.sent.wait(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        (row,) = await records(pr)
    assert row["status"] == "cancelled"
