"""Learned latencies: an exponentially weighted mean per (provider, model), in memory.

The executor records every successful call (total latency, and time to first
token for streams); the router reads the means to rank by speed and to honour
``max_latency_ms``. Nothing is persisted: a restart starts from no data, which
is what "no data yet" rankings are for.
"""

from __future__ import annotations

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


class LatencyStats:
    """Per (provider, model) exponentially weighted means of latency and time to first token.

    The first sample sets the mean; each later one moves it by ``alpha`` of the
    difference. Single-threaded use (one event loop), like the rest of the router.
    """

    __slots__ = ("_slots", "alpha")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], not {alpha}")
        self.alpha = alpha
        self._slots: dict[tuple[str, str], LatencySlot] = {}

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

    def snapshot(self) -> dict[tuple[str, str], tuple[float | None, float | None, int]]:
        """Every pair with data, for state pages and tests."""
        return {
            k: (s.latency_ms, s.ttft_ms, s.samples) for k, s in self._slots.items() if s.samples
        }
