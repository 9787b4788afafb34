"""The sliding window log, in process: one log per limited scope.

Each admitted attempt is an entry (time, tokens). A scope admits one more when, over
the last :data:`WINDOW_S` seconds, it holds fewer than ``rpm`` entries and their tokens
plus the new worst case come to at most ``tpm``. A refusal says when the window admits
the request: when enough of its oldest entries have aged out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Rate:
    """A scope's limits a minute; 0: none."""

    rpm: int = 0
    tpm: int = 0

    def __bool__(self) -> bool:
        return bool(self.rpm or self.tpm)


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a window turned a request away."""

    scope: str
    limit: str
    """``rpm`` or ``tpm``."""
    per_minute: int
    requested: int
    """The request's worst-case tokens."""
    retry_after: float | None
    """Seconds until the window admits it; ``None``: never (its worst case is over ``tpm``)."""


class _Entry:
    __slots__ = ("hold", "tokens", "ts")

    def __init__(self, hold: str, ts: float, tokens: int) -> None:
        self.hold, self.ts, self.tokens = hold, ts, tokens


class Log:
    """One scope's entries of the last minute, oldest first, and their tokens."""

    __slots__ = ("by_hold", "entries", "tokens")

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.by_hold: dict[str, _Entry] = {}
        self.tokens = 0

    def expire(self, now: float) -> None:
        entries, cutoff = self.entries, now - WINDOW_S
        while entries and entries[0].ts <= cutoff:
            e = entries.popleft()
            self.tokens -= e.tokens
            del self.by_hold[e.hold]

    def refusal(self, scope: str, rate: Rate, need: int, now: float) -> Refused | None:
        """Why this window cannot take ``need`` more tokens now (call :meth:`expire` first)."""
        entries = self.entries
        if rate.rpm and len(entries) >= rate.rpm:
            oldest = entries[len(entries) - rate.rpm]  # the one whose going makes room
            return Refused(scope, "rpm", rate.rpm, need, oldest.ts + WINDOW_S - now)
        if rate.tpm:
            if need > rate.tpm:
                return Refused(scope, "tpm", rate.tpm, need, None)
            excess = self.tokens + need - rate.tpm
            if excess > 0:
                freed = 0
                for e in entries:
                    freed += e.tokens
                    if freed >= excess:
                        return Refused(scope, "tpm", rate.tpm, need, e.ts + WINDOW_S - now)
        return None

    def add(self, hold: str, now: float, tokens: int) -> None:
        e = _Entry(hold, now, tokens)
        self.entries.append(e)
        self.by_hold[hold] = e
        self.tokens += tokens

    def settle(self, hold: str, tokens: int | None) -> None:
        """The hold's tokens become ``tokens``; ``None`` takes the entry back (no call made)."""
        e = self.by_hold.get(hold)
        if e is None:  # aged out already
            return
        if tokens is None:
            self.entries.remove(e)  # rare (a budget refused the attempt): O(n) is fine
            del self.by_hold[hold]
            self.tokens -= e.tokens
        else:
            self.tokens += tokens - e.tokens
            e.tokens = tokens


class LocalWindows:
    """Every scope's log, in this process (owned by one :class:`~polyroute.limits.Limiter`).

    Not thread-safe: use it from one event loop (each gateway worker has its own)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._logs: dict[str, Log] = {}

    def admit(self, scopes: Sequence[tuple[str, Rate]], tokens: int, hold: str) -> Refused | None:
        """Admit into every scope or none: the first refusal, else ``None``."""
        now = self.clock()
        logs = []
        for scope, rate in scopes:
            log = self._logs.get(scope)
            if log is None:
                log = self._logs[scope] = Log()
            log.expire(now)
            refused = log.refusal(scope, rate, tokens, now)
            if refused is not None:
                return refused
            logs.append(log)
        for log in logs:
            log.add(hold, now, tokens)
        return None

    def settle(self, scopes: Sequence[str], hold: str, tokens: int | None) -> None:
        for scope in scopes:
            log = self._logs.get(scope)
            if log is not None:
                log.settle(hold, tokens)
