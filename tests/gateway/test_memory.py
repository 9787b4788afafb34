"""The serving app hands the heap's free pages back to the system (``_memory``)."""

from __future__ import annotations

import asyncio
import ctypes
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.test_stream_writes import gateway
from polyroute.gateway import _memory


class Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()

    def __call__(self) -> int:
        self.calls += 1
        self.called.set()
        return 1


async def test_trims_while_the_block_runs_and_stops_after() -> None:
    trim = Counting()
    async with _memory.trimming(trim, interval_s=0.01) as task:
        assert task is not None
        while trim.calls < 3:
            trim.called.clear()
            await asyncio.wait_for(trim.called.wait(), 5)
    assert task.cancelled()
    calls = trim.calls
    await asyncio.sleep(0.05)
    assert trim.calls == calls


async def test_a_trim_is_the_c_librarys_own_here() -> None:
    if not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "malloc_trim"):
        pytest.skip("not glibc")
    trim = _memory.malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)  # 1: memory was released


class NoTrim:
    """A C library without ``malloc_trim`` (musl)."""

    def __init__(self, name: object) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


async def test_a_c_library_without_malloc_trim_runs_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ctypes, "CDLL", NoTrim)
    assert _memory.malloc_trim() is None
    async with _memory.trimming() as task:
        assert task is None


async def test_no_trim_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _memory.malloc_trim() is None


async def test_the_serving_app_trims_until_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trim = Counting()
    monkeypatch.setattr(_memory, "malloc_trim", lambda: trim)
    monkeypatch.setattr(_memory, "TRIM_S", 0.01)
    async with gateway(tmp_path, None):  # lifecycle=True, as ``polyroute serve``
        await asyncio.wait_for(trim.called.wait(), 5)
    calls = trim.calls
    await asyncio.sleep(0.05)
    assert trim.calls == calls  # stopped with the app
