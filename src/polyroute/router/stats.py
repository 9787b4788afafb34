"""Learned latencies: an exponentially weighted mean per (provider, model), in memory.

The executor records every successful call (total latency, and time to first
token for streams); the router reads the means to rank by speed and to honour
``max_latency_ms``. Nothing is persisted: a restart starts from no data, which
is what "no data yet" rankings are for.

Learned data ages, so that a provider is never judged for ever on what it did
once (a slow cold first call would otherwise keep it out of ``auto``: not
chosen, it is never measured again). The weight of the past halves every
``half_life_s``: a sample after a quiet spell moves the mean by more than
``alpha``, and a pair's evidence (its samples, each worth 1, halving with time,
at most ``1 / alpha``) is forgotten once it falls below one half. One sample is
then forgotten after one half-life, a well-measured pair after about three
without calls; a forgotten pair is "no data" again, and the strategies explore
it as they do a new one.

A pair may be *seeded* (:meth:`LatencyStats.seed`, from a bench run): the seed
stands for its means while nothing live is known (``samples`` stays 0), the
first live call replaces it, and a forgotten pair returns to it.

Replicas (``[storage] redis_url``) share the means without a Redis trip on the
request path: with :attr:`LatencyStats.pending` set, each sample is also added to
it, and ``polyroute.shared`` periodically sends those to Redis, which keeps the
cluster's mean per pair, and brings the cluster's means back
(:meth:`LatencyStats.adopt`).
"""

from __future__ import annotations

import heapq
import math
import time
import weakref
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence

DEFAULT_ALPHA = 0.2
"""Weight of the newest sample: about the last ten calls dominate the mean."""
DEFAULT_HALF_LIFE_S = 300.0
"""Every five minutes without a call halves the weight of what was learned."""
_FORGET_BELOW = 0.5


class LatencySlot:
    """The live means of one (provider, model). Read them; only :class:`LatencyStats` writes."""

    __slots__ = (
        "at",
        "expires_at",
        "latency_ms",
        "samples",
        "seed",
        "ttft_ms",
        "ttft_samples",
        "weight",
    )

    def __init__(self) -> None:
        self.latency_ms: float | None = None
        self.ttft_ms: float | None = None
        self.samples = 0
        self.ttft_samples = 0
        self.weight = 0.0
        """The evidence as of ``at``: samples, each halving every half-life."""
        self.at = 0.0
        self.expires_at = math.inf
        """When the evidence falls below one half and the means are forgotten."""
        self.seed: tuple[float, float | None] | None = None
        """(latency_ms, ttft_ms) that stand while nothing live is known."""

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
    difference, or more after a quiet spell, and unrefreshed means are forgotten
    (see the module docs; ``clock``: monotonic seconds). Single-threaded use (one
    event loop), like the rest of the router.
    """

    __slots__ = ("_expiries", "_feeds", "_slots", "alpha", "clock", "half_life_s", "pending")

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        *,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], not {alpha}")
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be > 0, not {half_life_s}")
        self.alpha = alpha
        self.half_life_s = half_life_s
        self.clock = clock
        self._slots: dict[tuple[str, str], LatencySlot] = {}
        # per pair, the columns (held weakly) and rows that show it
        self._feeds: dict[tuple[str, str], list[tuple[weakref.ref[LatencyColumns], int]]] = {}
        # (when, pair): one entry per pair with data, due at or before the slot's expires_at
        self._expiries: list[tuple[float, tuple[str, str]]] = []
        self.pending: dict[tuple[str, str], list[float]] | None = None
        """When set (shared with other replicas), the samples not sent yet per pair:
        ``[count, latency sum, ttft count, ttft sum]``; the sender swaps it for an empty one."""

    def record(
        self, provider: str, model: str, latency_ms: float, ttft_ms: float | None = None
    ) -> None:
        """One completed call's total latency, and its time to first token if it streamed."""
        now = self.clock()
        self.expire(now)
        key = (provider, model)
        s = self.slot(provider, model)
        kept = 2.0 ** (-(now - s.at) / self.half_life_s) if s.weight else 0.0
        a = 1.0 - (1.0 - self.alpha) * kept  # alpha right after the last sample, 1 long after
        s.latency_ms = (
            latency_ms if s.latency_ms is None else s.latency_ms + a * (latency_ms - s.latency_ms)
        )
        s.samples += 1
        if ttft_ms is not None:
            s.ttft_ms = ttft_ms if s.ttft_ms is None else s.ttft_ms + a * (ttft_ms - s.ttft_ms)
            s.ttft_samples += 1
        s.weight = min(s.weight * kept + 1.0, 1.0 / self.alpha)
        s.at = now
        if s.expires_at == math.inf:  # else its entry is in the heap already (see expire)
            heapq.heappush(self._expiries, (now + self._lifetime(s.weight), key))
        s.expires_at = now + self._lifetime(s.weight)
        self._publish(key, s)
        pending = self.pending
        if pending is not None:
            p = pending.get(key)
            if p is None:
                p = pending[key] = [0.0, 0.0, 0.0, 0.0]
            p[0] += 1
            p[1] += latency_ms
            if ttft_ms is not None:
                p[2] += 1
                p[3] += ttft_ms

    def adopt(
        self,
        provider: str,
        model: str,
        latency_ms: float,
        ttft_ms: float | None,
        samples: int,
        weight: float,
    ) -> None:
        """The cluster's means of a pair (every replica's samples, ``weight`` their evidence
        now): they replace this process's, which go on from there."""
        if weight <= _FORGET_BELOW:  # forgotten there: nothing to adopt
            return
        now = self.clock()
        key = (provider, model)
        s = self.slot(provider, model)
        s.latency_ms = latency_ms
        s.ttft_ms = ttft_ms if ttft_ms is not None else s.ttft_ms
        s.samples = max(samples, 1)
        s.ttft_samples = max(s.ttft_samples, 1 if s.ttft_ms is not None else 0)
        s.weight = min(weight, 1.0 / self.alpha)
        s.at = now
        expires_at = now + self._lifetime(s.weight)
        if expires_at < s.expires_at:  # sooner than its entry in the heap: one more entry
            heapq.heappush(self._expiries, (expires_at, key))
        s.expires_at = expires_at
        self._publish(key, s)

    def pairs(self) -> list[tuple[str, str]]:
        """Every pair a slot was made for (the router's, those with data)."""
        return list(self._slots)

    def expire(self, now: float | None = None) -> None:
        """Forget the means whose evidence has aged below one half (cheap when none has:
        the router calls this before each decision)."""
        due = self._expiries
        if not due:
            return
        at = self.clock() if now is None else now
        while due and due[0][0] <= at:
            _, key = heapq.heappop(due)
            s = self._slots[key]
            if s.expires_at == math.inf:  # forgotten already (adopt left a second entry)
                continue
            if s.expires_at > at:  # refreshed since (an expiry only moves later): requeued
                heapq.heappush(due, (s.expires_at, key))
                continue
            s.latency_ms, s.ttft_ms = s.seed if s.seed is not None else (None, None)
            s.samples = s.ttft_samples = 0
            s.weight = 0.0
            s.expires_at = math.inf
            self._publish(key, s)

    def seed(self, provider: str, model: str, latency_ms: float, ttft_ms: float | None) -> None:
        """Means measured elsewhere (a bench run): they stand while no live call is known."""
        s = self.slot(provider, model)
        s.seed = (latency_ms, ttft_ms)
        if not s.samples:
            s.latency_ms, s.ttft_ms = latency_ms, ttft_ms
            self._publish((provider, model), s)

    def _lifetime(self, weight: float) -> float:
        return self.half_life_s * math.log2(weight / _FORGET_BELOW)

    def _publish(self, key: tuple[str, str], s: LatencySlot) -> None:
        feeds = self._feeds.get(key)
        if feeds:
            gone = False
            for ref, row in feeds:
                columns = ref()
                if columns is None:
                    gone = True
                else:
                    columns._update(row, s)
            if gone:  # a router gone: forget its columns
                feeds[:] = [(ref, row) for ref, row in feeds if ref() is not None]

    def get(self, provider: str, model: str) -> tuple[float | None, float | None, int]:
        """``(latency_ms, ttft_ms, samples)``; ``(None, None, 0)`` while nothing is learned."""
        self.expire()
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
        self.expire()
        return {
            k: (s.latency_ms, s.ttft_ms, s.samples) for k, s in self._slots.items() if s.samples
        }
