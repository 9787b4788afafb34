"""What the gateway's HTTP protocol and the upstream transport's connections share.

- :class:`Deadline`: one timer for a connection's successive deadlines. A request or a
  read sets a deadline and clears it again, thousands of times a second; a timer each
  (``call_later``, then ``cancel``) was a good part of an exchange's cost. This timer is
  left running when a deadline is cleared, re-armed only for a deadline earlier than
  it, and when it fires it sleeps on to the deadline then set, if any, or lapses.
- :class:`WriteFlow`: asyncio's write flow control for a protocol (``pause_writing``,
  ``resume_writing``) and the wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    """Calls ``expired`` once the loop's time reaches the deadline :meth:`set` last, unless
    :meth:`clear` came first (see module docs)."""

    __slots__ = ("_at", "_expired", "_loop", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._at = 0.0  # 0: none
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def set(self, at: float) -> None:
        """The deadline is ``at`` (the loop's time)."""
        self._at = at
        if self._timer is None or self._timer_at > at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._fire)

    def clear(self) -> None:
        """No deadline, for now (the timer runs on, and lapses if none is set by then)."""
        self._at = 0.0

    def cancel(self) -> None:
        """No deadline, for good: the connection is closing."""
        self._at = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        at = self._at
        if not at:
            return
        if self._loop.time() < at:
            self.set(at)
        else:
            self._at = 0.0
            self._expired()


class WriteFlow:
    """A protocol's write flow control: its transport pauses and resumes it, and
    :meth:`drained` waits for the resume. A lost connection should resume it, so that
    nothing waits for ever."""

    write_paused = False
    _drained: asyncio.Future[bool] | None = None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained = self._drained
        if drained is not None:
            self._drained = None
            if not drained.done():
                drained.set_result(False)

    async def drained(self, timeout: float | None = None) -> bool:
        """Wait until writes are taken again: ``True``, or ``False`` past ``timeout``."""
        drained = self._drained
        if drained is None:
            drained = self._drained = asyncio.get_running_loop().create_future()
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(timeout, _late, drained)
        try:
            late = await drained
        finally:
            if timer is not None:
                timer.cancel()
        return not late


def _late(drained: asyncio.Future[bool]) -> None:
    if not drained.done():
        drained.set_result(True)
