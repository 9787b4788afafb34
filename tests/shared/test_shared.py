"""``Shared``: local stand-in, messages between replicas, and Redis going away and back."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from polyroute.shared import Shared
from servers.redis import RedisServer


async def eventually(check: Any, within_s: float = 5.0) -> float:
    """Poll ``check()`` until true; the seconds it took (fails after ``within_s``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within_s:
            raise AssertionError(f"not true within {within_s}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_without_redis_messages_reach_this_process_only() -> None:
    shared = Shared("")
    heard: list[dict[str, Any]] = []
    unsubscribe = shared.subscribe("keys", heard.append)
    assert not shared.enabled and shared.up and shared.redis is None
    assert await shared.call(lambda r: r.ping()) is None
    assert await shared.publish("keys", {"id": "k1"})
    assert heard == [{"id": "k1"}]
    unsubscribe()
    await shared.publish("keys", {"id": "k2"})
    assert len(heard) == 1
    await shared.start()
    await shared.aclose()


async def test_a_message_reaches_the_other_replicas_not_its_sender(redis_url: str) -> None:
    a, b = Shared(redis_url), Shared(redis_url)
    await a.start()
    await b.start()
    try:
        heard_a: list[dict[str, Any]] = []
        heard_b: list[dict[str, Any]] = []
        a.subscribe("keys", heard_a.append)
        b.subscribe("keys", heard_b.append)
        assert await a.publish("keys", {"id": "k1"})
        await eventually(lambda: heard_b)
        assert heard_b == [{"id": "k1", "origin": a.replica}]
        await asyncio.sleep(0.05)
        assert heard_a == []
        assert await a.call(lambda r: r.set(a.key("x"), "1")) is True
        assert await b.call(lambda r: r.get(b.key("x"))) == "1"
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_is_said_once_and_nothing_fails_then_it_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer()
    server.start()
    a, b = Shared(server.url, reconnect_s=0.05), Shared(server.url, reconnect_s=0.05)
    resynced: list[str] = []

    async def resync() -> None:
        resynced.append("a")

    a.on_connect(resync)
    try:
        await a.start()
        await b.start()
        heard: list[dict[str, Any]] = []
        b.subscribe("keys", heard.append)
        caplog.set_level(logging.WARNING, "polyroute.shared")
        server.kill()
        await eventually(lambda: not a.up)
        for _ in range(5):  # known down: answered at once, no error, no new log line
            assert await a.call(lambda r: r.ping()) is None
            assert not await a.publish("keys", {"id": "lost"})
        a.spawn(lambda r: r.ping())
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(unreachable) == 2  # once each: a and b
        server.start()
        await eventually(lambda: a.up and b.up)
        assert resynced == ["a", "a"]  # at start, and on reconnecting
        assert await a.call(lambda r: r.ping()) is True
        await asyncio.sleep(0.1)  # b's listener subscribed again
        await eventually(lambda: b.up)
        assert await a.publish("keys", {"id": "k2"})
        await eventually(lambda: heard)
        assert heard[-1]["id"] == "k2"
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        await a.aclose()
        await b.aclose()
        server.remove()


async def test_an_unreachable_server_at_start_is_local_state_not_an_error() -> None:
    shared = Shared("redis://127.0.0.1:9/0", timeout_s=0.2, reconnect_s=0.05)
    try:
        await shared.start()
        assert not shared.up
        assert await shared.call(lambda r: r.ping()) is None
    finally:
        await shared.aclose()


async def test_a_message_that_is_not_json_is_ignored(redis_url: str) -> None:
    a = Shared(redis_url)
    heard: list[dict[str, Any]] = []
    a.subscribe("keys", heard.append)
    await a.start()
    try:
        await a.call(lambda r: r.publish(a.key("ch", "keys"), "{not json"))
        await a.call(lambda r: r.publish(a.key("ch", "keys"), '{"id": "k"}'))
        await eventually(lambda: heard)
        assert heard == [{"id": "k"}]
    finally:
        await a.aclose()


async def test_a_refused_command_is_not_an_outage(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    a = Shared(redis_url)
    await a.start()
    try:
        await a.call(lambda r: r.set(a.key("s"), "text"))
        assert await a.call(lambda r: r.incr(a.key("s"))) is None  # not an integer
        assert a.up
        assert any("refused a command" in r.getMessage() for r in caplog.records)
    finally:
        await a.aclose()


async def test_a_command_that_failed_while_the_listener_held_is_recovered_from(
    redis_url: str,
) -> None:
    a = Shared(redis_url)
    resyncs: list[int] = []

    async def resync() -> None:
        resyncs.append(1)

    a.on_connect(resync)
    await a.start()
    try:
        a._down(TimeoutError("a slow command"))  # as a command timing out would
        assert not a.up and await a.call(lambda r: r.ping()) is None
        await eventually(lambda: a.up)  # the listener pings within a second
        assert len(resyncs) == 2 and await a.call(lambda r: r.ping()) is True
    finally:
        await a.aclose()


async def test_closing_ends_a_listener_whose_client_swallows_the_cancellation(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client library that turns a cancellation into a quiet return (or its own error)
    must not keep the listener looping: closing would wait for it for ever."""
    from redis.asyncio.client import PubSub

    async def swallowing(self: PubSub, *args: Any, **kwargs: Any) -> None:
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            return None
        return None

    monkeypatch.setattr(PubSub, "get_message", swallowing)
    shared = Shared(redis_url)
    await shared.start()
    await asyncio.sleep(0.05)  # the listener waits in get_message
    await asyncio.wait_for(shared.aclose(), 3)
    assert not shared.listening


async def test_closing_never_hangs_on_a_teardown_that_never_ends(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from redis.asyncio.client import PubSub

    from polyroute.shared import _shared

    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stuck(self: PubSub) -> None:
        while not never.done():
            try:
                await asyncio.shield(never)
            except asyncio.CancelledError:
                continue

    monkeypatch.setattr(PubSub, "aclose", stuck)
    monkeypatch.setattr(_shared, "CLOSE_S", 0.2)
    shared = Shared(redis_url)
    await shared.start()
    try:
        await asyncio.wait_for(shared.aclose(), 3)
        assert "did not stop within 0.2s of closing" in caplog.text
    finally:
        never.set_result(None)  # the task left behind ends
        await asyncio.sleep(0.05)
