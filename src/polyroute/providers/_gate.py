"""A cap on a provider's open upstream connections: at most ``limit`` at once, the rest
wait in arrival order, each for at most its pool timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Gate:
    """``limit`` slots; a holder must :meth:`release` its slot exactly once.

    Not bound to an event loop (waiters are futures of the loop that waits). The slot of
    a waiter granted one just as it timed out is kept (it is served late rather than
    refused); one granted as it was cancelled is passed on.
    """

    __slots__ = ("_free", "_waiters", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a connection cap must be at least 1, got {limit}")
        self.limit = limit
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, timeout: float | None) -> bool:
        """Take a slot, waiting at most ``timeout`` seconds; ``False`` if none came in time."""
        if self._free:  # then nobody waits: release hands slots to waiters first
            self._free -= 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return True
            self._forget(waiter)
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()
            else:
                self._forget(waiter)
            raise
        return True

    def release(self) -> None:
        """Give a slot back: to the longest waiter still waiting, else to the free count."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # else cancelled, its task not yet run to forget it
                waiter.set_result(None)
                return
        self._free += 1

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # release already dropped it
            self._waiters.remove(waiter)
