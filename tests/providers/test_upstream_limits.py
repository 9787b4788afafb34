"""Each provider caps its open upstream connections, and no upstream answer is read past
``max_response_bytes`` (DESIGN.md §2, §4)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import httpx2
import pytest

from polyroute.errors import (
    APITimeoutError,
    InternalServerError,
    InvalidResponseError,
    PoolTimeoutError,
    ResponseTooLargeError,
)
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.providers._gate import Gate
from polyroute.types import ChatRequest, Message

ANSWER = json.dumps(
    {
        "id": "x",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()
CHUNK = 'data: {"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
STREAM = (
    CHUNK
    + 'data: {"id":"x","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
).encode()

# What the upstream sends for a request's model: (status, headers, body parts; None: forever)
Reply = tuple[int, dict[str, str], list[bytes] | None]


def _reply(model: str, stream: bool) -> Reply:
    if model == "fail":
        return 503, {"content-length": "2"}, [b"{}"]
    if model == "huge":  # with its length said up front
        return 200, {"content-length": str(10 * 2**20)}, [b" " * 2**20] * 10
    if model == "endless-chunked":
        return 200, {"transfer-encoding": "chunked"}, None
    if model == "endless-close":
        return 200, {"connection": "close"}, None
    body = STREAM if stream else ANSWER
    if model == "endless-stream":
        return 200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}, None
    return 200, {"content-length": str(len(body))}, [body]


@dataclass
class Upstream:
    """An HTTP/1.1 keep-alive server on loopback that answers after ``delay_s`` and counts
    the connections it accepts and holds open at once."""

    delay_s: float = 0.01
    accepted: int = 0
    open_now: int = 0
    most_open: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._handlers.values():
            writer.close()  # each handler then sees its connection end, and returns
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        self.accepted += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length) or b"{}")
                await asyncio.sleep(self.delay_s)
                status, headers, parts = _reply(body.get("model", ""), bool(body.get("stream")))
                lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
                chunked = headers.get("transfer-encoding") == "chunked"
                if parts is None:  # forever, until the client hangs up
                    piece = CHUNK.encode() * 100
                    while True:
                        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                        await writer.drain()
                for part in parts:
                    writer.write(part)
                    await writer.drain()
                if headers.get("connection") == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            self.open_now -= 1
            writer.close()
            del self._handlers[task]


def _client(pool: HttpPool, base_url: str, **options: int) -> ProviderClient:
    return connect(Provider("up", "openai-compatible", base_url, Secret("k"), **options), pool)  # type: ignore[arg-type]


def _req(model: str = "m", **kw: object) -> ChatRequest:
    return ChatRequest(model, [Message.user("hi")], **kw)  # type: ignore[arg-type]


# -- the connection cap --------------------------------------------------------------


async def test_gate_hands_slots_on_in_order_and_forgets_who_gave_up() -> None:
    gate = Gate(1)
    assert await gate.acquire(None)
    assert not await gate.acquire(0.01)  # timed out: not counted as waiting any more
    order: list[int] = []

    async def take(i: int) -> None:
        assert await gate.acquire(5)
        order.append(i)
        gate.release()

    waiting = [asyncio.create_task(take(i)) for i in range(3)]
    cancelled = asyncio.create_task(take(99))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    assert gate.waiting == 3
    gate.release()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2] and gate.in_use == 0 and gate.waiting == 0


async def test_a_slot_granted_to_a_cancelled_waiter_is_passed_on() -> None:
    gate = Gate(1)
    assert await gate.acquire(None)
    first = asyncio.create_task(gate.acquire(5))
    second = asyncio.create_task(gate.acquire(5))
    await asyncio.sleep(0)
    gate.release()  # granted to the first, which is cancelled before it runs
    first.cancel()
    assert await second
    assert gate.in_use == 1 and gate.waiting == 0


async def _mixed_call(client: ProviderClient, i: int) -> str:
    """One call of a mix that ends every way a call can end."""
    kind = i % 5
    if kind == 0:
        return (await client.complete(_req())).content
    if kind == 1:
        with pytest.raises(InternalServerError):
            await client.complete(_req("fail"))
        return "failed"
    if kind == 2:
        return "".join([getattr(e, "text", "") async for e in client.stream(_req())])
    if kind == 3:  # a stream closed after its first event
        events = client.stream(_req())
        await anext(events)
        await events.aclose()  # type: ignore[attr-defined]
        return "closed"
    task = asyncio.create_task(client.complete(_req()))  # cancelled while in flight
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return "cancelled"


@pytest.mark.parametrize("via", ["lean", "httpx2"])
async def test_500_concurrent_calls_never_open_more_than_the_cap(via: str) -> None:
    transport = httpx2.AsyncHTTPTransport() if via == "httpx2" else None
    async with Upstream(delay_s=0.01) as up:
        pool = HttpPool(transport=transport)
        client = _client(pool, up.base_url, max_connections=8)
        results = await asyncio.gather(*(_mixed_call(client, i) for i in range(500)))
        gate = client._x._gate
        assert gate.in_use == 0 and gate.waiting == 0  # every path gave its slot back
        assert results.count("hi") == 200 and results.count("failed") == 100
        await pool.aclose()
    assert up.most_open <= 8, up.most_open
    if via == "lean":  # kept alive and reused: the cap is all it ever opened
        assert up.accepted <= 8 + 200  # (closed streams and cancelled calls drop theirs)


async def test_a_call_that_waits_past_its_pool_timeout_is_a_retryable_error() -> None:
    async with Upstream(delay_s=0.5) as up:
        pool = HttpPool()
        client = _client(pool, up.base_url, max_connections=1)
        busy = asyncio.create_task(client.complete(_req()))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeoutError) as info:
            await client.complete(_req(), timeout_s=0.1)
        assert isinstance(info.value, APITimeoutError) and info.value.retryable
        assert "max_connections" in str(info.value) and info.value.provider == "up"
        assert (await busy).content == "hi"
        assert (await client.complete(_req())).content == "hi"  # the slot came back
        await pool.aclose()
    assert up.accepted == 1


# -- the response size cap -------------------------------------------------------------


@pytest.mark.parametrize("via", ["lean", "httpx2"])
@pytest.mark.parametrize("model", ["huge", "endless-chunked", "endless-close"])
async def test_an_answer_over_the_limit_is_an_error_and_reading_stops(via: str, model: str) -> None:
    transport = httpx2.AsyncHTTPTransport() if via == "httpx2" else None
    async with Upstream(delay_s=0) as up:
        pool = HttpPool(transport=transport)
        client = _client(pool, up.base_url, max_response_bytes=64 * 1024)
        with pytest.raises(ResponseTooLargeError) as info:
            await client.complete(_req(model), timeout_s=10)  # endless bodies end only here
        assert isinstance(info.value, InvalidResponseError) and not info.value.retryable
        assert "0.0625 MB" in str(info.value)
        assert client._x._gate.in_use == 0
        assert (await client.complete(_req())).content == "hi"  # the pool is still sound
        await pool.aclose()


async def test_a_stream_over_the_limit_is_an_error() -> None:
    async with Upstream(delay_s=0) as up:
        pool = HttpPool()
        client = _client(pool, up.base_url, max_response_bytes=64 * 1024)
        seen = 0
        with pytest.raises(ResponseTooLargeError):
            async for _ in client.stream(_req("endless-stream"), timeout_s=10):
                seen += 1
        assert 0 < seen < 1000 and client._x._gate.in_use == 0
        assert "".join([getattr(e, "text", "") async for e in client.stream(_req())]) == "hi"
        assert client._x._gate.in_use == 0  # a stream read to its end gives its slot back
        await pool.aclose()


async def test_answers_under_the_limit_and_the_default_limit() -> None:
    assert Provider("p", "openai", "").max_response_bytes == 50 * 2**20
    assert Provider("p", "openai", "").max_connections == 100
    async with Upstream(delay_s=0) as up:
        pool = HttpPool()
        client = _client(pool, up.base_url, max_response_bytes=len(ANSWER))
        assert (await client.complete(_req())).content == "hi"
        await pool.aclose()


def test_config_reaches_the_provider() -> None:
    from polyroute.config import Config, validate

    settings = {
        "gateway": {"max_response_mb": 0.5},
        "providers": {"p": {"type": "ollama", "max_connections": 7}},
    }
    provider = Config(validate(settings, "test"), "test", {}).provider("p")
    assert provider.max_connections == 7 and provider.max_response_bytes == 2**19
    with pytest.raises(Exception, match="max_connections"):
        validate({"providers": {"p": {"type": "ollama", "max_connections": 0}}}, "test")
