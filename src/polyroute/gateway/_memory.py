"""Hand the heap's free pages back to the system while serving.

glibc keeps memory that Python frees in its heaps: the main one and each thread's arena
(the ledger's thread has one). Bursts of large bodies (stored Responses API answers,
batches of ledger rows) leave free pages there that the process keeps for good, so its
resident memory creeps up to the highest burst's. ``malloc_trim(0)`` returns those pages
(``madvise``), and costs about 0.1 ms, so the serving app runs it every ``TRIM_S``.
Measured with ``bench/gateway.py``'s server after five rounds of ``/v1/responses``: 97.6
MiB resident before a trim, 84.6 MiB after. Elsewhere (macOS, musl) there is no such
function, and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable

TRIM_S = 10.0
"""Seconds between two trims."""

Trim = Callable[[], object]


def malloc_trim() -> Trim | None:
    """glibc's ``malloc_trim(0)``, or ``None`` where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # no C library to load, or not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)


async def _every(trim: Trim, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        trim()


@contextlib.asynccontextmanager
async def trimming(
    trim: Trim | None = None, interval_s: float | None = None
) -> AsyncIterator[asyncio.Task[None] | None]:
    """Trim every ``interval_s`` (default ``TRIM_S``) while the block runs; the task, or
    ``None`` when the C library cannot trim. ``trim``: default :func:`malloc_trim`."""
    trim = trim or malloc_trim()
    if trim is None:
        yield None
        return
    task = asyncio.get_running_loop().create_task(_every(trim, interval_s or TRIM_S))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])  # not ``await task``: its CancelledError is not ours
