"""A coroutine run by hand as far as it goes without waiting, then awaited for the rest.

Some awaits usually need no wait at all: the next event of a stream whose network read
carried several, a body that came with its head. Driving the coroutine one step with
``send(None)`` tells which, so that what a wait needs (a timeout's timer, a socket write
of what is ready) is paid only when there is one.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Rest(Generic[T]):
    """Awaits what is left of ``step``, a coroutine started by hand that suspended on
    ``waiting``: the same as ``await step`` had it not been started (what the event loop
    sends or throws in, a cancellation or a timeout, goes on to ``step``). ``exc``: thrown
    into it first."""

    __slots__ = ("_exc", "_step", "_waiting")

    def __init__(
        self,
        step: Coroutine[Any, Any, T],
        waiting: object,
        exc: BaseException | None = None,
    ) -> None:
        self._step = step
        self._waiting = waiting
        self._exc = exc

    def __await__(self) -> Generator[object, object, T]:
        step, waiting, exc = self._step, self._waiting, self._exc
        sent: object = None
        while True:
            if exc is None:
                try:
                    sent = yield waiting
                except GeneratorExit:
                    step.close()
                    raise
                except BaseException as thrown:  # noqa: BLE001 - handed on to the step
                    exc = thrown
            try:
                waiting = step.send(sent) if exc is None else step.throw(exc)
            except StopIteration as got:
                return got.value  # type: ignore[no-any-return]
            exc = None
