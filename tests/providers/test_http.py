"""The shared HTTP engine: line framing, request bodies, URLs, and both ways of sending."""

from __future__ import annotations

import asyncio
import json
import math

import httpx2
import pytest

from polyroute.errors import ConfigError, RateLimitError, UnsupportedError
from polyroute.events import TextDelta
from polyroute.providers import HttpPool, Provider, Secret, connect
from polyroute.providers._http import _Lines
from polyroute.testing import OpenAISimulator
from polyroute.types import ChatRequest, Message

TEXT = "data: a\r\n\r\ndata: é€\r\revent: x\ndata: 😀\n\nlast"
LINES = ["data: a", "", "data: é€", "", "event: x", "data: 😀", "", "last"]


def _collect(parts: list[bytes]) -> list[str]:
    lines = _Lines()
    return [line for part in parts for line in lines.feed(part)] + lines.end()


def test_lines_are_the_same_wherever_the_chunks_split() -> None:
    raw = TEXT.encode()
    assert _collect([raw]) == LINES
    for i in range(len(raw) + 1):  # CRLF and multi-byte characters split across chunks
        assert _collect([raw[:i], raw[i:]]) == LINES, i
    for i in range(0, len(raw), 3):
        assert _collect([raw[:i], raw[i : i + 2], b"", raw[i + 2 :]]) == LINES, i


def test_lines_end_at_a_final_line_end_and_bad_bytes_are_replaced() -> None:
    assert _collect([b"a\r"]) == ["a"]
    assert _collect([b"a\r\n"]) == ["a"]
    assert _collect([b"\xff\xfeok\n"]) == ["\ufffd\ufffdok"]
    assert _collect([b"\xc3"]) == ["\ufffd"]  # a character cut off by the end
    assert _collect([]) == []


def _request(**kw: float) -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=[Message.user("hi")], **kw)


async def test_a_value_json_cannot_carry_is_refused_before_sending() -> None:
    pool = HttpPool()
    with OpenAISimulator() as sim:
        c = connect(Provider("oa", "openai", sim.base_url, Secret("k")), pool)
        with pytest.raises(UnsupportedError, match="cannot be sent as JSON") as info:
            await c.complete(_request(temperature=math.nan))
        assert info.value.provider == "oa" and not info.value.retryable
        assert sim.calls == 0
    await pool.aclose()


@pytest.mark.parametrize("base_url", ["ftp://127.0.0.1/v1", "http://[::1/v1"])
async def test_a_bad_base_url_is_a_config_error(base_url: str) -> None:
    pool = HttpPool()
    c = connect(Provider("oa", "openai", base_url, Secret("k")), pool)
    with pytest.raises(ConfigError, match="bad base_url"):
        await c.complete(_request())
    await pool.aclose()


async def test_through_an_injected_transport_calls_streams_and_errors_work() -> None:
    seen: list[httpx2.Request] = []
    reply = {
        "id": "c1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    chunk = {"id": "c1", "choices": [{"index": 0, "delta": {"content": "yo"}}]}
    end = {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    sse = f"data: {json.dumps(chunk)}\r\n\r\ndata: {json.dumps(end)}\r\n\r\ndata: [DONE]\r\n\r\n"

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if len(seen) == 3:
            return httpx2.Response(429, headers={"retry-after": "7", "x-request-id": "r3"})
        if json.loads(request.content).get("stream"):
            return httpx2.Response(200, content=sse.encode())
        return httpx2.Response(200, json=reply, headers={"x-request-id": "r1"})

    pool = HttpPool(transport=httpx2.MockTransport(handler))
    c = connect(Provider("oa", "openai", "http://127.0.0.1:1/v1", Secret("sk-k")), pool)
    answer = await c.complete(_request())
    assert (answer.content, answer.request_id) == ("hi", "r1")
    events = [e async for e in c.stream(_request())]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["yo"]
    with pytest.raises(RateLimitError) as info:
        await c.complete(_request())
    assert (info.value.retry_after, info.value.request_id) == (7.0, "r3")
    assert "Too Many Requests" in str(info.value)  # no body: the status's reason phrase
    first = seen[0]
    assert first.headers["authorization"] == "Bearer sk-k"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"].startswith("polyroute/")
    await pool.aclose()


async def test_configured_headers_replace_ours_and_are_sent_once() -> None:
    heads: list[bytes] = []
    reply = json.dumps({"object": "list", "data": []}).encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(reply), reply))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpPool()
    headers = {"User-Agent": "custom/1", "Authorization": "Bearer other", "X-Team": "a"}
    provider = Provider("oa", "openai", f"http://127.0.0.1:{port}/v1", Secret("k"), headers=headers)
    try:
        await connect(provider, pool).list_models()
    finally:
        server.close()
        await pool.aclose()
    lines = heads[0].decode().lower().split("\r\n")
    names = [line.partition(":")[0] for line in lines[1:] if line]
    assert sorted(names) == sorted(set(names))  # no header twice
    assert "user-agent: custom/1" in lines
    assert "authorization: bearer other" in lines
    assert "x-team: a" in lines
