"""Learned latencies: an exponentially weighted mean per (provider, model), in memory.

The executor records every successful call (total latency, and time to first
token for streams); the router reads the means to rank by speed and to honour
``max_latency_ms``. Nothing is persisted: a restart starts from no data, which
is what "no data yet" rankings are for.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, insort
from collections.abc import Sequence

DEFAULT_ALPHA = 0.2
"""Weight of the newest sample: about the last ten calls dominate the mean."""


class LatencySlot:
    """The live means of one (provider, model). Read them; only :class:`LatencyStats` writes."""

    __slots__ = ("latency_ms", "samples", "ttft_ms", "ttft_samples")

    def __init__(self) -> None:
        self.latency_ms: float | None = None
        self.ttft_ms: float | None = None
        self.samples = 0
        self.ttft_samples = 0

    def __repr__(self) -> str:
        return (
            f"LatencySlot(latency_ms={self.latency_ms!r}, ttft_ms={self.ttft_ms!r}, "
            f"samples={self.samples})"
        )


class LatencyColumns:
    """The means of a fixed list of pairs as flat lists indexed by row (a router's table),
    kept current by :meth:`LatencyStats.record`: a decision reads them as they are, with
    no per-pair attribute read. Get one from :meth:`LatencyStats.columns`; read only."""

    __slots__ = (
        "__weakref__",
        "_sorted_first_token",
        "_sorted_latency",
        "first_token",
        "latency",
        "samples",
        "version",
    )

    def __init__(self, slots: Sequence[LatencySlot]) -> None:
        self.version = 0
        """Counts updates: an unchanged version means unchanged columns."""
        self.latency: list[float | None] = [s.latency_ms for s in slots]
        """Total latency."""
        self.first_token: list[float | None] = [
            s.latency_ms if s.ttft_ms is None else s.ttft_ms for s in slots
        ]
        """Time to first token where learned, else total latency: what streams wait for."""
        self.samples: list[int] = [s.samples for s in slots]
        # the learned values of each column, in order: the fastest and slowest at hand
        self._sorted_latency = sorted(x for x in self.latency if x is not None)
        self._sorted_first_token = sorted(x for x in self.first_token if x is not None)

    def span(self, first_token: bool = False) -> tuple[float, float] | None:
        """The lowest and highest learned value of a column (``None``: nothing learned)."""
        known = self._sorted_first_token if first_token else self._sorted_latency
        return (known[0], known[-1]) if known else None

    def _update(self, row: int, s: LatencySlot) -> None:
        first_token = s.latency_ms if s.ttft_ms is None else s.ttft_ms
        _move(self._sorted_latency, self.latency[row], s.latency_ms)
        _move(self._sorted_first_token, self.first_token[row], first_token)
        self.latency[row] = s.latency_ms
        self.first_token[row] = first_token
        self.samples[row] = s.samples
        self.version += 1


def _move(ordered: list[float], old: float | None, new: float | None) -> None:
    """``old`` replaced by ``new`` in the sorted list ``ordered``."""
    if old is not None:
        del ordered[bisect_left(ordered, old)]
    if new is not None:
        insort(ordered, new)


class LatencyStats:
    """Per (provider, model) exponentially weighted means of latency and time to first token.

    The first sample sets the mean; each later one moves it by ``alpha`` of the
    difference. Single-threaded use (one event loop), like the rest of the router.
    """

    __slots__ = ("_feeds", "_slots", "alpha")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], not {alpha}")
        self.alpha = alpha
        self._slots: dict[tuple[str, str], LatencySlot] = {}
        # per pair, the columns (held weakly) and rows that show it
        self._feeds: dict[tuple[str, str], list[tuple[weakref.ref[LatencyColumns], int]]] = {}

    def record(
        self, provider: str, model: str, latency_ms: float, ttft_ms: float | None = None
    ) -> None:
        """One completed call's total latency, and its time to first token if it streamed."""
        s = self.slot(provider, model)
        a = self.alpha
        s.latency_ms = (
            latency_ms if s.latency_ms is None else s.latency_ms + a * (latency_ms - s.latency_ms)
        )
        s.samples += 1
        if ttft_ms is not None:
            s.ttft_ms = ttft_ms if s.ttft_ms is None else s.ttft_ms + a * (ttft_ms - s.ttft_ms)
            s.ttft_samples += 1
        feeds = self._feeds.get((provider, model))
        if feeds:
            for ref, row in feeds:
                columns = ref()
                if columns is not None:
                    columns._update(row, s)
            if any(ref() is None for ref, _ in feeds):  # a router gone: forget its columns
                feeds[:] = [(ref, row) for ref, row in feeds if ref() is not None]

    def get(self, provider: str, model: str) -> tuple[float | None, float | None, int]:
        """``(latency_ms, ttft_ms, samples)``; ``(None, None, 0)`` while nothing is learned."""
        s = self._slots.get((provider, model))
        if s is None:
            return None, None, 0
        return s.latency_ms, s.ttft_ms, s.samples

    def slot(self, provider: str, model: str) -> LatencySlot:
        """The live slot of a pair (made empty if new): the router keeps these to read the
        means without a dictionary lookup per candidate per decision."""
        key = (provider, model)
        s = self._slots.get(key)
        if s is None:
            s = self._slots[key] = LatencySlot()
        return s

    def columns(self, pairs: Sequence[tuple[str, str]]) -> LatencyColumns:
        """The means of ``pairs`` as flat columns (row ``i`` is ``pairs[i]``), updated in
        place by every later :meth:`record` for as long as the returned object lives."""
        columns = LatencyColumns([self.slot(p, m) for p, m in pairs])
        ref = weakref.ref(columns)
        for row, key in enumerate(pairs):
            self._feeds.setdefault(key, []).append((ref, row))
        return columns

    def snapshot(self) -> dict[tuple[str, str], tuple[float | None, float | None, int]]:
        """Every pair with data, for state pages and tests."""
        return {
            k: (s.latency_ms, s.ttft_ms, s.samples) for k, s in self._slots.items() if s.samples
        }
