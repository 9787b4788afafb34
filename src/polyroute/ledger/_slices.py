"""Budget slices: a process reserves against its own share of a budget, in memory.

Reserving every request in the database costs one write transaction on the
ledger's one thread, which caps budgeted throughput. Instead a ledger leases a
*slice* of a budget's headroom in one transaction: a reservation row (id
``slice:...``, see ``_store.py``) holding the slice's amount against every
limited (scope, period) a request counts against, owned by this process's
lease. Requests then reserve their exact worst case against the slice in
memory and settle in memory; their records carry the slice's id, and the batch
that writes them moves each actual cost from the slice's hold to spend. So the
database's ``spent + reserved <= limit`` still bounds everything any process
can spend: a process only spends what its slices hold.

Sizing: a slice is ``headroom / (SHARE x live processes)``, at most
``MAX_WORST`` worst cases of the request that leased it; when that is under
``MIN_WORST`` worst cases the budget is near its limit (or small) and the
request is reserved in the database as before, after handing back this
process's unused slice, so the last cents are admitted one request at a time.
A slice is topped up ahead of exhaustion (below half its size) by a job the
request does not wait for. Limits changed (``budget set``, a key's budget, the
optimizer) are seen after the ledger's budget refresh (``Ledger._usable``): a
slice leased under other limits is retired and what it has left is handed back. Slices unused
for ``IDLE_S``, retired ones with nothing in flight, and all of them at close
are released whole; a killed process's slices lapse with its lease (Step 6).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyroute.ledger._records import BudgetLimits, Reservation, period_key, to_nusd

if TYPE_CHECKING:
    from collections.abc import Mapping

    from polyroute.ledger._store import Store

SHARE = 4
"""A slice is at most the headroom / (SHARE x live processes)."""
MIN_WORST = 16
"""A slice smaller than this many worst cases is not leased: reserve per request."""
MAX_WORST = 512
"""A slice is at most this many worst cases of the request that leases it."""
IDLE_S = 1.0
"""A slice unused this long goes back (at the ledger's next lease renewal)."""

SLICE_PREFIX = "slice:"
"""A reservation row with an id like this is a slice: its records draw on it, and it is
released only whole or by :meth:`Store.shrink_slice`."""

Targets = tuple[tuple[str, str], ...]
SliceKey = tuple[tuple[str, str, int], ...]
"""The limited (scope, period, limit in nano-USD) a slice was leased under."""


@dataclass(slots=True)
class _Slice:
    id: str
    key: SliceKey
    targets: Targets
    size: int
    """nano-USD leased last (the top-up threshold is half of it)"""
    free: int
    """nano-USD of the slice no request holds or has spent"""
    retire_at: float
    """before the row's own expiry, so a sweep never finds a slice still in use"""
    last_used: float
    inflight: int = 0
    unwritten: int = 0
    """records that ended on it and that the database has not written: their costs are
    still in the slice's row, so releasing it whole would count them neither held nor spent"""
    alive: bool = True
    topping_up: bool = False


def is_slice(reservation_id: str) -> bool:
    return reservation_id.startswith(SLICE_PREFIX)


def slice_key(limits: Mapping[str, BudgetLimits], ts: float) -> tuple[SliceKey, Targets]:
    """The (scope, period, limit) checks of ``limits`` at ``ts``, in the order
    :meth:`Store.reserve` makes them, and their (scope, period) targets."""
    key = tuple(
        (scope, period_key(kind, ts), to_nusd(limit))
        for scope, lim in limits.items()
        for kind in ("daily", "monthly")
        if (limit := lim.for_period(kind)) is not None
    )
    return key, tuple((scope, period) for scope, period, _ in key)


def _current(key: SliceKey, limits: Mapping[str, BudgetLimits]) -> bool:
    """Whether ``limits`` are still those a slice was leased under."""
    for scope, period, limit in key:
        lim = limits.get(scope)
        now = (
            None if lim is None else lim.for_period("daily" if period[:4] == "day:" else "monthly")
        )
        if now is None or to_nusd(now) != limit:
            return False
    return True


class Slices:
    """This process's slices, by the checks they were leased under.

    :meth:`take` and :meth:`settled` run on the event loop; :meth:`refill`,
    :meth:`top_up`, :meth:`tick` and :meth:`release_all` on the ledger's thread;
    one lock keeps the counts whole between them."""

    def __init__(self, *, reservation_ttl_s: float, lease_ttl_s: float) -> None:
        self.reservation_ttl_s = reservation_ttl_s
        self.lease_ttl_s = lease_ttl_s
        self._lock = threading.Lock()
        self._by_key: dict[SliceKey, _Slice] = {}
        self._by_id: dict[str, _Slice] = {}
        self._lease_until = 0.0

    def take(
        self, key: SliceKey, worst_usd: float, ts: float
    ) -> tuple[Reservation, SliceKey | None] | None:
        """Hold ``worst_usd`` against the slice leased under ``key``: the reservation, and
        ``key`` again if the slice should be topped up now; ``None``: no slice can take it."""
        worst = to_nusd(worst_usd, up=True)
        with self._lock:
            s = self._by_key.get(key)
            # a lease that was not renewed in time may have been swept with its holds
            if (
                s is None
                or s.free < worst
                or ts >= s.retire_at
                or ts >= self._lease_until - self.lease_ttl_s / 2
            ):
                return None
            s.free -= worst
            s.inflight += 1
            s.last_used = ts
            low = not s.topping_up and s.free < s.size // 2
            if low:
                s.topping_up = True
            return Reservation(s.id, worst_usd, s.targets), key if low else None

    def settled(self, reservation: Reservation, cost_usd: float | None) -> None:
        """A request held against a slice ended, costing ``cost_usd``: what it held and did not
        spend is free again (its record moves the cost from the slice's hold to spend)."""
        worst = to_nusd(reservation.amount_usd, up=True)
        cost = 0 if cost_usd is None else max(0, to_nusd(cost_usd))
        with self._lock:
            s = self._by_id.get(reservation.id)
            if s is not None:
                s.inflight -= 1
                s.unwritten += 1
                s.free += worst - cost

    def written(self, reservations: list[Reservation]) -> None:
        """Records drawing on these (slice) reservations are committed."""
        with self._lock:
            for r in reservations:
                s = self._by_id.get(r.id)
                if s is not None:
                    s.unwritten -= 1

    def cancelled(self, reservation: Reservation) -> None:
        """The request never went out (no record): all it held is free again."""
        worst = to_nusd(reservation.amount_usd, up=True)
        with self._lock:
            s = self._by_id.get(reservation.id)
            if s is not None:
                s.inflight -= 1
                s.free += worst

    def refill(
        self,
        store: Store,
        limits: Mapping[str, BudgetLimits],
        worst_usd: float,
        ts: float,
    ) -> Reservation | None:
        """On the ledger's thread, for a request :meth:`take` could not hold: lease or top up
        its slice and hold it there; ``None``: reserve it in the database (this process's
        unused slice for these checks has been handed back first)."""
        key, targets = slice_key(limits, ts)
        if not key:
            return None
        held = self.take(key, worst_usd, ts)  # a top-up or a budget refresh may have done it
        if held is not None:
            return held[0]
        self._retire_superseded(store, key, ts)
        with self._lock:
            s = self._by_key.get(key)
        if s is not None and ts >= s.retire_at:
            self._retire(store, s)
            s = None
        if not self._lease(store, key, targets, limits, worst_usd, ts, s):
            if s is not None:
                self._retire(store, s)
            return None
        held = self.take(key, worst_usd, ts)
        return None if held is None else held[0]

    def top_up(
        self,
        store: Store,
        key: SliceKey,
        limits: Mapping[str, BudgetLimits],
        worst_usd: float,
        ts: float,
    ) -> None:
        """Top the slice under ``key`` up ahead of its exhaustion (a job nobody awaits)."""
        with self._lock:
            s = self._by_key.get(key)
        try:
            if s is not None and s.alive:
                _, targets = slice_key(limits, ts)
                self._lease(store, key, targets, limits, worst_usd, ts, s)
        finally:
            if s is not None:
                with self._lock:
                    s.topping_up = False

    def _lease(
        self,
        store: Store,
        key: SliceKey,
        targets: Targets,
        limits: Mapping[str, BudgetLimits],
        worst_usd: float,
        ts: float,
        grow: _Slice | None,
    ) -> bool:
        worst = to_nusd(worst_usd, up=True)
        leased = store.lease_slice(
            limits,
            ts,
            min_nusd=MIN_WORST * worst,
            max_nusd=MAX_WORST * worst,
            share=SHARE,
            ttl_s=self.reservation_ttl_s,
            lease_s=self.lease_ttl_s,
            grow=None if grow is None else grow.id,
        )
        with self._lock:
            if store.leased_until is not None:
                self._lease_until = store.leased_until
            if leased is None:
                return False
            rid, size = leased
            if grow is not None and grow.alive:
                grow.free += size
                grow.size = size
                return True
            s = _Slice(rid, key, targets, size, size, ts + self.reservation_ttl_s / 2, ts)
            self._by_key[key] = s
            self._by_id[rid] = s
            return True

    def _retire_superseded(self, store: Store, key: SliceKey, ts: float) -> None:
        """Slices over these (scope, period)s leased under other limits: a limit changed."""
        mine = {(scope, period) for scope, period, _ in key}
        with self._lock:
            old = [
                s
                for k, s in self._by_key.items()
                if k != key and mine & {(scope, period) for scope, period, _ in k}
            ]
        for s in old:
            self._retire(store, s)

    def _retire(self, store: Store, s: _Slice) -> None:
        """Take no more from ``s``; hand back what it has free (all of it when nothing is
        in flight or unwritten; otherwise :meth:`tick` releases the rest later)."""
        with self._lock:
            if self._by_key.get(s.key) is s:
                del self._by_key[s.key]
            s.alive = False
            free, s.free = max(0, s.free), min(0, s.free)
            whole = s.inflight == 0 and s.unwritten == 0
            if whole:
                self._by_id.pop(s.id, None)
        if whole:
            store.release([s.id])
        elif free:
            store.shrink_slice(s.id, free)

    def tick(self, store: Store, now: float, limits: Mapping[str, BudgetLimits]) -> None:
        """At each lease renewal: retire slices leased under limits that changed since (set
        by another process), release idle and retired ones with nothing in flight."""
        with self._lock:
            changed = [s for s in self._by_key.values() if not _current(s.key, limits)]
        for s in changed:
            self._retire(store, s)
        with self._lock:
            if store.leased_until is not None:
                self._lease_until = store.leased_until
            done = [
                s
                for s in self._by_id.values()
                if s.inflight == 0
                and s.unwritten == 0
                and (not s.alive or now - s.last_used >= IDLE_S)
            ]
            for s in done:
                s.alive = False
                self._by_id.pop(s.id, None)
                if self._by_key.get(s.key) is s:
                    del self._by_key[s.key]
            back = [(s.id, s.free) for s in self._by_id.values() if not s.alive and s.free > 0]
            for s in self._by_id.values():
                if not s.alive:
                    s.free = min(0, s.free)
        if done:
            store.release([s.id for s in done])
        for rid, free in back:
            store.shrink_slice(rid, free)

    def hand_back(self, store: Store) -> None:
        """Retire every slice, handing back what requests in flight do not hold (before a
        budget report, so its "held" is what requests hold)."""
        with self._lock:
            alive = list(self._by_key.values())
        for s in alive:
            self._retire(store, s)

    def release_all(self, store: Store) -> None:
        """At close: every slice goes back whole (records still queued are written first,
        or kept for the next open, which writes their spend without a hold to move)."""
        with self._lock:
            ids = list(self._by_id)
            self._by_id.clear()
            self._by_key.clear()
        if ids:
            store.release(ids)
