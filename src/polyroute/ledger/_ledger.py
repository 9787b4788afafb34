"""The ledger: usage records and budget reservations, off the event loop.

A :class:`Ledger` owns one thread and one database connection. Reservations
and queries are jobs the loop awaits; usage records are handed over without
waiting and written in batches (every ``flush_interval_s``: 0.25 s where the journal
holds them, else 0.05 s; sooner when ``max_batch`` pile up, or when a caller waits for
a commit or a reservation or a read needs them), each batch one transaction that also
settles the batch's reservations and fires budget alerts. ``aclose()`` (or ``close()``,
also run at interpreter exit) writes what is pending. If the database
refuses a batch, the records stay queued and are retried; if it still
refuses them at close, they go to a JSON-lines spill file next to the
database, which the next open writes back in.

Durability ``"answered"`` (the default): :meth:`record` appends the record to
this process's journal (``_journal.py``) before it returns, so it survives a
``kill -9``; the gateway awaits :meth:`durable` before a reply's last byte,
which then has nothing left to wait for. Where there is no journal (a database
that is not a file, or a disk that refused it), ``durable`` waits for the
commit instead: its waiters ride in the record queue, so the thread writes at
once, and everything queued while one transaction commits goes into the next
(group commit). ``"batched"``: ``durable`` returns at once, and a kill loses
what the last batch interval handed over.

A database server (PostgreSQL) that cannot be reached: records go to this
host's spool (``spool_dir``) and answer their waiters, the thread reopens the
database every second and writes the spool back; reservations use the budgets
last read, so one a budget governs fails (:class:`LedgerUnavailableError`).

Holds are leased (see ``_store.py``): while this ledger holds any, its
thread renews the lease every quarter of ``lease_ttl_s``; a reservation
refused by a budget first sweeps holds of dead processes and tries again.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from polyroute.errors import BudgetExceeded, LedgerError, LedgerUnavailableError
from polyroute.hub import BudgetAlert, BudgetChanged, EventHub, HubEvent, UsageRecorded
from polyroute.ledger._journal import (
    SEGMENT_BYTES,
    Journal,
    dead_journals,
    decode,
    encode,
    journal_dir,
)
from polyroute.ledger._keys import (
    PREFIX_CHARS,
    VirtualKey,
    clean_key_args,
    hash_secret,
    looks_like_secret,
    new_key_id,
    new_secret,
)
from polyroute.ledger._records import (
    DAY_S,
    GLOBAL,
    BudgetLimits,
    BudgetStatus,
    GroupBy,
    PeriodKind,
    Reservation,
    UsageRecord,
    UsageReport,
    check_usd,
    key_scope,
    provider_scope,
)
from polyroute.ledger._slices import SliceKey, Slices, is_slice, slice_key

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from polyroute.config import Config
    from polyroute.ledger._slices import SliceKey
    from polyroute.ledger._store import SettleItem, Store

log = logging.getLogger("polyroute.ledger")
T = TypeVar("T")
Source = Literal["config", "cli", "none"]
Durability = Literal["answered", "batched"]
DURABILITIES: tuple[Durability, ...] = ("answered", "batched")

KEEP: Any = object()
"""For :meth:`Ledger.set_budget`: leave this value as it is."""


@dataclass(frozen=True, slots=True)
class _Reserving:
    """What a reservation in the database holds for (see :meth:`Store.reserve_group`)."""

    provider: str
    virtual_key: str | None
    amount_usd: float
    ts: float


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[[Store], Any]
    future: concurrent.futures.Future[Any]
    settle_first: bool = False
    """If it raises BudgetExceeded while settlements are pending, write them and run it again:
    settled spend releases worst-case holds, so a refusal must not rest on stale ones."""
    reserving: _Reserving | None = None
    """A reservation that may share a transaction with others queued with it."""


MAX_GROUP = 64
"""Reservations the database thread takes into one transaction at most."""
BATCH_S = 0.05
"""How long a batch of records waits to be written while a kill would lose it."""
JOURNALED_BATCH_S = 0.25
"""... and while the journal holds every record of it already (durability "answered"):
each batch costs the thread a transaction and the interpreter lock several times, and
while the event loop is busy each wait for the lock sets off wakeups (README)."""


@dataclass(frozen=True, slots=True)
class _Wake:
    """Records wait in a deque, not in the job queue: the thread is woken for the first
    of a batch (to set its timer) and for a full batch, not once per record; ``now``: a
    caller waits for the commit, so write without waiting for the timer."""

    now: bool = False


_WAKE = _Wake()
_WAKE_NOW = _Wake(now=True)

_Waiter = concurrent.futures.Future[None]
"""In the record queue: answered once every record queued before it is committed."""


@dataclass(frozen=True, slots=True)
class _Flush:
    future: concurrent.futures.Future[None]
    stop: bool = False


class Ledger:
    """Usage and budgets in the database at ``url`` (``sqlite:///path``)."""

    def __init__(
        self,
        url: str,
        *,
        budgets: Mapping[str, BudgetLimits] | None = None,
        hub: EventHub | None = None,
        flush_interval_s: float | None = None,
        max_batch: int = 2000,
        reservation_ttl_s: float = 900.0,
        lease_ttl_s: float = 10.0,
        budget_refresh_s: float = 1.0,
        durability: Durability = "answered",
        clock: Callable[[], float] = time.time,
        segment_bytes: int = SEGMENT_BYTES,
        spool_dir: Path | None = None,
        slices: bool | None = None,
    ) -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be answered or batched, not {durability!r}")
        self.url = url
        self.config_budgets = dict(budgets or {})
        self.hub = hub or EventHub()
        self.max_batch = max_batch
        self.reservation_ttl_s = reservation_ttl_s
        self.lease_ttl_s = lease_ttl_s
        self.durability = durability
        self.budget_refresh_s = budget_refresh_s
        self.clock = clock
        self.spool_dir = spool_dir
        """Where records a database server (not a file) refused wait for it (default
        ``$POLYROUTE_HOME/spool``)."""
        self._spooled = False  # this ledger put records in the spool that it has not drained
        # budgets set with `polyroute budget set`, as (read at, rows); replaced whole, never mutated
        self._cli_budgets: tuple[float, dict[str, BudgetLimits]] | None = None
        self._rereading = False  # a job that reads them again is queued (see _usable)
        # the limits governing each (provider, key) by those rows, worked out once per read
        self._governing: tuple[dict[str, BudgetLimits], dict[_Caller, Governing]]
        self._governing = ({}, {})
        self._jobs: queue.SimpleQueue[_Call | _Wake | _Flush] = queue.SimpleQueue()
        self._records: deque[SettleItem | _Waiter] = deque()
        self._owner = uuid.uuid4().hex  # of this ledger's holds, lease and journal
        self._handing = threading.Lock()
        self._handed = 0  # records handed over (under _handing), numbered from 1 ...
        self._committed = 0  # ... and how many of them the thread has written, in order
        self._must_commit = 0  # the last one that durable() must see written (not journaled)
        self._journal: Journal | None = None
        if durability == "answered":
            self._journal = self._open_journal(segment_bytes)
        self._journaling = self._journal is not None
        if flush_interval_s is None:
            flush_interval_s = JOURNALED_BATCH_S if self._journaling else BATCH_S
        self.flush_interval_s = flush_interval_s
        """How long a batch of records waits to be written (see :data:`JOURNALED_BATCH_S`)."""
        self._closed = False
        self._slices = Slices(reservation_ttl_s=reservation_ttl_s, lease_ttl_s=lease_ttl_s)
        self.slices = self._database_file() is not None if slices is None else slices
        """Reserve against budget slices in memory (``_slices.py``); by default where the
        database is a file. On a server an outage must refuse budgeted requests at once,
        which only a reservation in the database sees."""
        self._thread = threading.Thread(target=self._run, name="polyroute-ledger", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def __repr__(self) -> str:
        return f"Ledger({self.url!r})"

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` (or :meth:`close`) has run: the ledger takes nothing more."""
        return self._closed

    # -- the request path ------------------------------------------------------

    async def reserve(
        self,
        *,
        provider: str,
        model: str,
        amount_usd: float | None,
        ts: float,
        virtual_key: str | None = None,
    ) -> Reservation:
        """Hold ``amount_usd`` (the worst case) against every budget this request counts against.

        Raises :class:`BudgetExceeded` when one cannot take it. With no budget
        in play and fresh budget data this returns without touching the database.
        """
        if self._closed:  # refuse before the call is paid for, not at record() after it
            raise LedgerError("the ledger is closed")
        governing = self._governing_now(provider, virtual_key)
        if governing is not None:
            held = self.hold(governing, amount_usd, ts)
            if held is not None:
                return held

        def job(store: Store) -> Reservation:
            limits = self._limits(_scopes(provider, virtual_key), self._known_budgets(store))
            ttl, lease = self.reservation_ttl_s, self.lease_ttl_s
            if self.slices and amount_usd is not None:
                sliced = self._slices.refill(store, limits, amount_usd, ts)
                if sliced is not None:
                    return sliced
            try:
                return store.reserve(limits, amount_usd, ts, ttl, model, lease)
            except BudgetExceeded:
                if not self._sweep(store):  # no dead process's holds in the way
                    raise
                return store.reserve(limits, amount_usd, ts, ttl, model, lease)

        future: concurrent.futures.Future[Reservation] = concurrent.futures.Future()
        if self._closed:
            raise LedgerError("the ledger is closed")
        grouped = None  # a slice, or a refusal unasked, is for the job alone
        if not self.slices and amount_usd is not None:
            grouped = _Reserving(provider, virtual_key, amount_usd, ts)
        self._jobs.put(_Call(job, future, settle_first=True, reserving=grouped))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # cancelled while the database thread held the budget: give it back when done
            future.add_done_callback(self._release_orphan)
            raise

    def governing(self, provider: str, virtual_key: str | None) -> Governing | None:
        """The budgets governing a call to ``provider`` with ``virtual_key``, by budgets
        fresh in memory (``None`` when that is not known: a closed ledger, budgets not read
        or too old; then only :meth:`reserve` can tell). Empty ``limits``: none governs it,
        so :meth:`reserve` would hold nothing."""
        if self._closed:
            return None
        return self._governing_now(provider, virtual_key)

    def hold(self, governing: Governing, amount_usd: float | None, ts: float) -> Reservation | None:
        """:meth:`reserve` without the database, for a call ``governing`` (from
        :meth:`governing`) covers: nothing held when no budget governs it, else
        ``amount_usd`` against this process's slice; ``None`` when that cannot be (no
        slice takes it, a closed ledger): then :meth:`reserve` it."""
        if self._closed:
            return None
        if not governing.limits:
            return Reservation("", amount_usd or 0.0, ())
        if not self.slices or amount_usd is None:
            return None
        held = self._slices.take(governing.slice_key(ts), amount_usd, ts)
        if held is None:
            return None
        if held[1] is not None:
            self._top_up(held[1], governing.limits, amount_usd, ts)
        return held[0]

    def _governing_now(self, provider: str, virtual_key: str | None) -> Governing | None:
        """The limits governing a call, by budgets in memory (``None``: not read, or too old)."""
        cached = self._cli_budgets
        if cached is None or not self._usable(cached[0]):
            return None
        rows, known = self._governing
        if rows is not cached[1]:  # read again since
            rows, known = self._governing = (cached[1], {})
        governing = known.get((provider, virtual_key))
        if governing is None:
            limits = self._limits(_scopes(provider, virtual_key), rows)
            governing = known[provider, virtual_key] = Governing(limits)
        return governing

    def _usable(self, read_at: float) -> bool:
        """Whether budgets read at ``read_at`` may still serve a reservation in memory.

        Fresh ones may. So may ones up to one more refresh interval old while a re-read is
        under way (started here): the requests of that moment then reserve against their
        slices instead of queueing behind the re-read. Past that (the database thread stuck,
        the database down) a reservation goes to the database, which decides.
        """
        age = self.clock() - read_at
        if age < self.budget_refresh_s:
            return True
        if age >= 2 * self.budget_refresh_s or self._closed:
            return False
        if not self._rereading:
            self._rereading = True
            future: concurrent.futures.Future[object] = concurrent.futures.Future()
            future.add_done_callback(self._reread)
            self._jobs.put(_Call(lambda s: self._fresh_budgets(s, force=True), future))
        return True

    def _reread(self, future: concurrent.futures.Future[object]) -> None:
        self._rereading = False
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.warning("reading the budgets again failed: %s", exc)

    def _top_up(
        self, key: SliceKey, limits: dict[str, BudgetLimits], amount_usd: float, ts: float
    ) -> None:
        """Top a slice up ahead of its exhaustion; no request waits for it."""
        if not self._closed:
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            future.add_done_callback(_log_top_up)
            top_up = self._slices.top_up
            self._jobs.put(_Call(lambda s: top_up(s, key, limits, amount_usd, ts), future))

    def _release_orphan(self, future: concurrent.futures.Future[Reservation]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        held = future.result()
        if is_slice(held.id):
            self._slices.cancelled(held)
        elif held.targets and not self._closed:
            self._jobs.put(_Call(lambda s: s.release([held.id]), concurrent.futures.Future()))

    def record(self, record: UsageRecord, reservation: Reservation | None = None) -> None:
        """Queue ``record`` (and settle ``reservation`` to its cost); returns at once."""
        if self._closed:
            raise LedgerError("the ledger is closed")
        if reservation is not None and is_slice(reservation.id):
            self._slices.settled(reservation, record.cost_usd)
        records = self._records
        item = (record, reservation)
        with self._handing:
            self._handed += 1
            journal = self._journal
            if journal is None or not self._journaling:
                self._must_commit = self._handed
            else:
                try:
                    journal.append(item, self._handed)
                except OSError as exc:  # the database write is all that is left: wait for it
                    self._journaling = False
                    self._must_commit = self._handed
                    log.warning(
                        "ledger: the journal failed (%s); replies now wait for commits", exc
                    )
            records.append(item)
        n = len(records)  # 0 if the thread took it already: it then sets its own timer
        if n in (1, self.max_batch):
            self._jobs.put(_WAKE)

    async def durable(self) -> None:
        """Return once the records handed over so far are as durable as a reply needs.

        Under durability ``"answered"``: in the journal (so at once), or, where there is
        none (a database that is not a file, or a journal the disk refused), committed
        to the database (raises :class:`LedgerError` if it refused them). Under
        ``"batched"``: at once."""
        if self.durability == "batched" or self._committed >= self._must_commit:
            return
        if self._closed:
            raise LedgerError("the ledger is closed")
        waiter: _Waiter = concurrent.futures.Future()
        self._records.append(waiter)
        self._jobs.put(_WAKE_NOW)
        await asyncio.wrap_future(waiter)

    # -- budgets and reports -----------------------------------------------------

    def budget_scopes(self, extra: Iterable[str] = ()) -> dict[str, tuple[BudgetLimits, Source]]:
        rows = self._cli_budgets[1] if self._cli_budgets else {}
        out: dict[str, tuple[BudgetLimits, Source]] = {}
        for scope in [*self.config_budgets, *rows, *extra]:
            if scope in rows:
                out[scope] = (rows[scope], "cli")
            elif scope in self.config_budgets:
                out[scope] = (self.config_budgets[scope], "config")
            else:
                out[scope] = (BudgetLimits(), "none")
        return out

    async def budgets(self, extra: Iterable[str] = ()) -> list[BudgetStatus]:
        """Every budgeted scope (and ``extra`` ones), with what is spent and held now."""
        scopes = list(extra)

        def job(store: Store) -> list[BudgetStatus]:
            self._fresh_budgets(store, force=True)
            self._slices.hand_back(store)  # held: what requests in flight hold, not idle slices
            return store.budget_status(self.budget_scopes(scopes), self.clock())

        await self.flush()
        return await self._call(job)

    async def set_budget(
        self,
        scope: str,
        *,
        daily_usd: float | None = KEEP,
        monthly_usd: float | None = KEEP,
        alert_percents: tuple[float, ...] = KEEP,
        reason: str = "set",
    ) -> BudgetLimits:
        """Set limits for ``scope``; arguments left out keep their current value.

        Each limit that changed is a :class:`~polyroute.hub.BudgetChanged` event (``reason``)
        once committed. Raises :class:`ValueError` naming the argument for an amount that is
        not a number from 0 to ``MAX_USD``, or a percent outside (0, 100]."""
        for label, value in (("daily_usd", daily_usd), ("monthly_usd", monthly_usd)):
            if value is not KEEP and value is not None:
                check_usd(label, value)
        if alert_percents is not KEEP and not all(0 < p <= 100 for p in alert_percents):
            raise ValueError(f"alert_percents must be in (0, 100], not {alert_percents!r}")

        def job(store: Store) -> tuple[BudgetLimits, BudgetLimits]:
            base, _ = self.budget_scopes([scope])[scope]
            base = self._fresh_budgets(store, force=True).get(scope, base)
            limits = BudgetLimits(
                base.daily_usd if daily_usd is KEEP else daily_usd,
                base.monthly_usd if monthly_usd is KEEP else monthly_usd,
                base.alert_percents if alert_percents is KEEP else alert_percents,
            )
            store.set_budget(scope, limits, self.clock())
            self._fresh_budgets(store, force=True)
            self._slices.hand_back(store)  # leased under the old limits
            return base, limits

        base, limits = await self._call(job)
        changed: list[HubEvent] = []
        if base.daily_usd != limits.daily_usd:
            changed.append(BudgetChanged(scope, "daily", base.daily_usd, limits.daily_usd, reason))
        if base.monthly_usd != limits.monthly_usd:
            changed.append(
                BudgetChanged(scope, "monthly", base.monthly_usd, limits.monthly_usd, reason)
            )
        self.hub.emit_many(changed)
        return limits

    async def set_monthly_budgets(
        self,
        monthly_usd: Mapping[str, float | None],
        *,
        reasons: Mapping[str, str] | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> dict[str, tuple[float | None, float | None]]:
        """Set several scopes' monthly limits in one transaction (daily limits and alerts
        kept), together with ``also(connection)``'s writes; if anything raises, nothing
        changes. Returns ``{scope: (previous, new)}`` for the limits that changed, each also
        a :class:`~polyroute.hub.BudgetChanged` event (with ``reasons[scope]``) once committed.
        Raises :class:`ValueError` naming the scope for an amount out of range."""
        for scope, value in monthly_usd.items():
            if value is not None:
                check_usd(f"monthly_usd of {scope}", value)

        def job(store: Store) -> dict[str, tuple[float | None, float | None]]:
            self._fresh_budgets(store, force=True)
            scoped = self.budget_scopes(monthly_usd)  # as they are now: set, else the config's
            limits, changed = {}, {}
            for scope, value in monthly_usd.items():
                base = scoped[scope][0]
                limits[scope] = BudgetLimits(base.daily_usd, value, base.alert_percents)
                if base.monthly_usd != value:
                    changed[scope] = (base.monthly_usd, value)
            store.set_budgets(limits, self.clock(), also)
            self._fresh_budgets(store, force=True)
            self._slices.hand_back(store)  # leased under the old limits
            return changed

        changed = await self._call(job)
        why = reasons or {}
        self.hub.emit_many(
            [
                BudgetChanged(scope, "monthly", old, new, why.get(scope, ""))
                for scope, (old, new) in changed.items()
            ]
        )
        return changed

    async def usage(
        self, *, by: GroupBy = "provider", provider: str | None = None, since: float | None = None
    ) -> UsageReport:
        """Totals grouped ``by``, optionally for one provider and from a UTC day on."""
        await self.flush()
        return await self._call(lambda s: s.usage_report(by, provider, since))

    # -- virtual keys (the gateway's) ---------------------------------------------

    async def create_key(
        self,
        name: str,
        *,
        daily_usd: float | None = None,
        monthly_usd: float | None = None,
        models: Iterable[str] = (),
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[VirtualKey, str]:
        """A new key and its secret: the only time the secret exists outside its holder.

        Its budget is stored as scope ``key:<id>``, so reservations made with
        ``virtual_key=<id>`` charge it. Empty ``models``: any model. ``rpm``/``tpm``: its
        rate limits (requests, tokens a minute; ``None``: none). Raises
        :class:`ValueError` for an empty name, a budget that is not from 0 to
        ``MAX_USD``, or an empty model name, and :class:`TypeError` for ``models`` given as one string.
        A budget given is a :class:`~polyroute.hub.BudgetChanged` event (from no limit).
        """
        name, allowed = clean_key_args(name, daily_usd, monthly_usd, models, rpm, tpm)
        secret = new_secret()
        limits = None
        if daily_usd is not None or monthly_usd is not None:
            limits = BudgetLimits(daily_usd, monthly_usd)

        def job(store: Store) -> VirtualKey:
            key = store.create_key(
                name=name,
                secret_hash=hash_secret(secret),
                prefix=secret[:PREFIX_CHARS],
                models=allowed,
                limits=limits,
                now=self.clock(),
                new_id=new_key_id,
                rpm=rpm,
                tpm=tpm,
            )
            if limits is not None:  # this process's reservations see the budget at once
                self._fresh_budgets(store, force=True)
            return key

        key = await self._call(job)
        self.hub.emit_many(
            [
                BudgetChanged(key_scope(key.id), period, None, usd, "key created")
                for period, usd in _periods(daily_usd, monthly_usd)
                if usd is not None
            ]
        )
        return key, secret

    async def keys(self, include_revoked: bool = True) -> list[VirtualKey]:
        """Every key, oldest first, with its budget."""
        return await self._call(lambda s: s.keys(include_revoked))

    async def revoke_key(self, key_id: str) -> VirtualKey:
        """Revoke a key (again is harmless); raises :class:`UnknownKeyError` for an unknown id."""
        return await self._call(lambda s: s.revoke_key(key_id, self.clock()))

    async def key(self, key_id: str) -> VirtualKey | None:
        """The key with id ``key_id`` (revoked or not); ``None`` if there is none."""
        return await self._call(lambda s: self._budget_known(s, s.key(key_id)))

    async def verify_key(self, secret: str) -> VirtualKey | None:
        """The active key ``secret`` belongs to; ``None`` if it is unknown or revoked."""
        if not looks_like_secret(secret):
            return None
        digest = hash_secret(secret)
        return await self._call(lambda s: self._budget_known(s, s.verify_key(digest)))

    def _budget_known(self, store: Store, key: VirtualKey | None) -> VirtualKey | None:
        """``key``, once the cached budgets know its budget: a key created since they were
        read (by another process) would otherwise spend unbudgeted until they are read again."""
        cached = self._cli_budgets
        if (
            key is not None
            and (key.daily_usd is not None or key.monthly_usd is not None)
            and cached is not None
            and key_scope(key.id) not in cached[1]
        ):
            self._fresh_budgets(store, force=True)
        return key

    def forget_budgets(self) -> None:
        """Read the budgets again before the next reservation (another process changed one)."""
        self._cli_budgets = None

    async def run(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the database thread (tests, benchmarks, maintenance)."""
        return await self._call(fn)

    # -- lifecycle ---------------------------------------------------------------

    async def flush(self) -> None:
        """Return once every record handed over so far is committed."""
        if self._closed:  # the thread is gone: nothing would ever answer
            raise LedgerError("the ledger is closed")
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._jobs.put(_Flush(future))
        await asyncio.wrap_future(future)

    async def aclose(self) -> None:
        """Write what is pending and stop the thread."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        """Blocking close, for scripts and interpreter exit."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._jobs.put(_Flush(future, stop=True))
        self._thread.join()
        future.result()

    # -- the database thread -----------------------------------------------------

    async def _call(self, fn: Callable[[Store], T], *, settle_first: bool = False) -> T:
        if self._closed:
            raise LedgerError("the ledger is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put(_Call(fn, future, settle_first))
        return await asyncio.wrap_future(future)

    def _limits(
        self, scopes: list[str], rows: Mapping[str, BudgetLimits]
    ) -> dict[str, BudgetLimits]:
        out = {}
        for scope in scopes:
            lim = rows.get(scope) or self.config_budgets.get(scope)
            if lim is not None and not lim.empty:
                out[scope] = lim
        return out

    def _fresh_budgets(self, store: Store, *, force: bool = False) -> dict[str, BudgetLimits]:
        now = self.clock()
        cached = self._cli_budgets
        if force or cached is None or now - cached[0] >= self.budget_refresh_s:
            cached = (now, store.budget_rows())
            self._cli_budgets = cached
        return cached[1]

    def _known_budgets(self, store: Store) -> dict[str, BudgetLimits]:
        """Fresh budgets, or the last ones read while the database cannot be reached: a
        request no budget governs goes on, one that a budget governs fails reserving."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self._fresh_budgets(store)
        except SQLAlchemyError:
            if self._cli_budgets is None:
                raise
            return self._cli_budgets[1]

    def _open(self) -> tuple[Store | None, LedgerError]:
        from polyroute.ledger._store import Store

        try:
            store = Store(self.url, owner=self._owner)
        except LedgerError as exc:
            return None, exc
        self._take_spill(store)
        self._replay(store)
        self._sweep(store)
        return store, LedgerError("the ledger is not open")

    def _run(self) -> None:
        pending = _Pending()
        current: list[_Call | _Wake | _Flush | None] = [None]  # the job being served
        try:
            self._serve(pending, current)
        except Exception as exc:  # a bug in the ledger: keep answering, so no caller waits forever
            log.exception("the ledger's database thread failed")
            error = LedgerError(f"the ledger stopped on an error: {exc!r}")
            job = current[0]  # a record in hand is already in pending; a call or flush still waits
            self._serve_broken(pending, error, None if isinstance(job, _Wake) else job)

    def _serve_broken(
        self, pending: _Pending, error: LedgerError, waiting: _Call | _Flush | None
    ) -> None:
        """Fail every call, keep records for the spill file, stop on close."""
        job: _Call | _Wake | _Flush | None = None
        if waiting is not None and not waiting.future.done():
            job = waiting
        while True:
            if job is None:
                job = self._jobs.get()
            self._take_records(pending)
            pending.answer(error)
            if isinstance(job, _Wake):
                pass
            elif isinstance(job, _Call):
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(error)
            elif self._flushed(job, pending, None, error):
                return
            job = None

    def _serve(self, pending: _Pending, current: list[_Call | _Wake | _Flush | None]) -> None:
        store, open_error = self._open()
        next_open = time.monotonic() + 1
        next_sweep = time.monotonic() + 60
        renew_every = self.lease_ttl_s / 4
        next_renew = time.monotonic() + renew_every
        deadline: float | None = None
        refused = LedgerError("the ledger database refused the records; they are kept and retried")
        carried: _Call | _Wake | _Flush | None = None  # taken off the queue behind a group
        while True:
            wake_at = next_renew if deadline is None else min(deadline, next_renew)
            job, carried = self._next_job(carried, wake_at), None
            current[0] = job
            if store is None and time.monotonic() >= next_open:  # a server that came back
                store, open_error = self._open()
                next_open = time.monotonic() + 1
            if store is not None and time.monotonic() >= next_renew:
                self._renew(store)
                if self._spooled:
                    self._drain_spool(store)
                self._sweep_lapsed(store)
                next_renew = time.monotonic() + renew_every
            if deadline is None and self._records:  # a batch began: written within the interval
                deadline = time.monotonic() + self.flush_interval_s
            if isinstance(job, _Call):
                if store is None:
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(open_error)
                    continue
                carried = self._serve_call(job, store, pending, current)
                if not pending.items and not self._records:
                    deadline = None
                if not _due(deadline):  # a steady stream of calls must not starve the writes
                    continue
            # records stay in the deque until written, so their producers wake this thread
            # once per batch (the first record), not once per record; a timeout that is
            # not the batch's was for the lease
            elif not _due(deadline) and (
                job is None
                or (
                    isinstance(job, _Wake)
                    and not job.now
                    and len(pending.items) + len(self._records) < self.max_batch
                )
            ):
                continue
            # time to write: the timer fired, the batch is full, a flush was asked for, or a
            # caller waits for the commit
            self._take_records(pending)
            if (
                pending.items
                and (store is None or not self._write_pending(store, pending))
                and self._journal is None
                and self._database_file() is None
            ):
                self._spool(pending)  # a server, unreachable: the records wait on this host
            pending.answer(refused if store is not None else open_error)
            # a refused batch is retried a second later, not in a hot loop
            deadline = time.monotonic() + max(1.0, self.flush_interval_s) if pending.items else None
            if store is not None and time.monotonic() > next_sweep:
                self._replay(store)
                self._sweep(store)
                next_sweep = time.monotonic() + 60
            if isinstance(job, _Flush) and self._flushed(job, pending, store, open_error):
                return

    def _next_job(
        self, carried: _Call | _Wake | _Flush | None, wake_at: float
    ) -> _Call | _Wake | _Flush | None:
        """``carried`` if a job was taken off the queue already, else the next one to come
        by ``wake_at`` (``None``: none came)."""
        if carried is not None:
            return carried
        try:
            return self._jobs.get(timeout=max(0.0, wake_at - time.monotonic()))
        except queue.Empty:
            return None

    def _serve_call(
        self,
        job: _Call,
        store: Store,
        pending: _Pending,
        current: list[_Call | _Wake | _Flush | None],
    ) -> _Call | _Wake | _Flush | None:
        """Run ``job`` (with the reservations queued behind it, if it is one); return the
        job taken off the queue after them, if any. That job is ``current`` from then on: if
        the group fails on a bug, the broken thread answers it (the group's own callers are
        answered by :meth:`_reserve_group`)."""

        def settle_now() -> bool:
            self._take_records(pending)
            return _holds(pending.items) and self._write_pending(store, pending)

        settle = settle_now if job.settle_first else None
        group, after = self._queued_with(job)
        if after is not None:
            current[0] = after
        if len(group) > 1:
            self._reserve_group(store, group, settle)
        else:
            _run_call(job, store, settle)
        return after

    def _queued_with(self, job: _Call) -> tuple[list[_Call], _Call | _Wake | _Flush | None]:
        """``job`` and the reservations queued right behind it, if it is one that may be
        grouped (:class:`_Reserving`); and the next job, if it had to be taken off the queue
        to see that it is not one."""
        if job.reserving is None:
            return [job], None
        group = [job]
        while len(group) < MAX_GROUP:
            try:
                nxt = self._jobs.get_nowait()
            except queue.Empty:
                break
            if not isinstance(nxt, _Call) or nxt.reserving is None:
                return group, nxt
            group.append(nxt)
        return group, None

    def _reserve_group(
        self, store: Store, group: list[_Call], settle: Callable[[], bool] | None
    ) -> None:
        """Reservations that queued together, in one transaction; if one of them would be
        refused (or the database fails), each alone, as it would have run."""
        from sqlalchemy.exc import SQLAlchemyError

        jobs = [job for job in group if job.future.set_running_or_notify_cancel()]
        try:
            held = None
            if len(jobs) > 1:
                try:
                    known = self._known_budgets(store)
                    requests = [
                        (
                            self._limits(_scopes(r.provider, r.virtual_key), known),
                            r.amount_usd,
                            r.ts,
                        )
                        for job in jobs
                        if (r := job.reserving) is not None
                    ]
                    ttl, lease = self.reservation_ttl_s, self.lease_ttl_s
                    held = store.reserve_group(requests, ttl, lease)
                except SQLAlchemyError:  # each alone below meets it again, and says so
                    held = None
            if held is None:
                for job in jobs:
                    _run_call(job, store, settle, started=True)
            else:
                for job, reservation in zip(jobs, held, strict=True):
                    job.future.set_result(reservation)
        finally:  # a bug in the ledger: no caller of the group waits forever
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(LedgerError("the ledger stopped on an error"))

    def _write_pending(self, store: Store, pending: _Pending) -> bool:
        """Write what the thread holds, with the journal's position it reaches."""
        end = self._committed + len(pending.items)
        mark = None if self._journal is None else (self._owner, end)
        if not self._write(store, pending.items, mark):
            return False
        self._written(pending)
        if self._journal is not None:
            self._journal.committed(end)
        return True

    def _written(self, pending: _Pending) -> None:
        self._committed += len(pending.items)  # only this thread writes it
        pending.written()

    def _take_records(self, pending: _Pending) -> None:
        records = self._records
        while records:
            item = records.popleft()
            if isinstance(item, concurrent.futures.Future):
                pending.waiters.append(item)
            else:
                pending.items.append(item)

    def _flushed(
        self, job: _Flush, pending: _Pending, store: Store | None, open_error: LedgerError
    ) -> bool:
        """Answer a flush; on the closing one, spill what is left and stop (returns True)."""
        if job.stop:
            self._take_records(pending)
            items = pending.items
            journal = self._journal
            # the first of them are in the journal (all, unless it failed): it keeps those
            journaled = 0 if journal is None else max(0, journal.last_seq - self._committed)
            spill = items[journaled:]
            try:
                if spill:
                    self._spill(spill)
            except OSError as exc:  # close must still return, not leave its caller waiting
                lost = LedgerError(f"ledger: {len(spill)} records lost, no spill file: {exc}")
                pending.answer(lost)
                job.future.set_exception(lost)
            else:
                if journaled:
                    log.error("ledger: %d records kept in the journal for the next open", journaled)
                self._written(pending)  # kept in a file, which the next open writes back
                job.future.set_result(None)
            finally:
                if journal is not None:
                    self._close_journal(journal, store, keep=journaled > 0)
                if store is not None:
                    self._drop_lease(store)
                    store.close()
            return True
        if not job.future.set_running_or_notify_cancel():
            return False  # its caller was cancelled
        if not pending.items:
            job.future.set_result(None)
        elif store is None:
            job.future.set_exception(open_error)
        else:
            job.future.set_exception(
                LedgerError("the ledger database refused the records; they are kept and retried")
            )
        return False

    def _write(
        self, store: Store, batch: list[SettleItem], mark: tuple[str, int] | None = None
    ) -> bool:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            fired = store.settle(batch, self._limits_all(store), self.clock(), mark)
        except (SQLAlchemyError, TypeError, ValueError) as exc:
            log.warning("ledger write of %d records failed, will retry: %s", len(batch), exc)
            return False
        self._slices.written([res for _, res in batch if res is not None and is_slice(res.id)])
        hub = self.hub
        # built only for a listener of their kind: the gateway's listen to neither, and a
        # batch's events would cost its thread an object a record and the loop their rounds
        events: list[HubEvent] = []
        if hub.wants("usage_recorded"):
            events.extend(UsageRecorded(rec) for rec, _ in batch)
        if fired and hub.wants("budget_alert"):
            events.extend(
                BudgetAlert(a.scope, a.kind, a.period, a.percent, a.spent_usd, a.limit_usd)
                for a in fired
            )
        hub.emit_many(events)
        return True

    def _limits_all(self, store: Store) -> dict[str, BudgetLimits]:
        rows = self._fresh_budgets(store)
        return {**self.config_budgets, **rows}

    def _sweep(self, store: Store) -> int:
        """Release holds of dead processes; how many."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            released = store.sweep(self.clock())
        except SQLAlchemyError as exc:
            log.warning("releasing stale budget reservations failed: %s", exc)
            return 0
        if released:
            log.warning("released %d budget reservations left by a stopped process", released)
        return released

    def _sweep_lapsed(self, store: Store) -> None:
        """Free a killed process's holds once its lease lapses, not at the next refusal or
        minute's sweep: what budgets show held is what live processes hold."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            stale = store.has_stale(self.clock())
        except SQLAlchemyError as exc:  # tried again at the next renewal
            log.warning("looking for stale budget reservations failed: %s", exc)
            return
        if stale:
            self._sweep(store)

    def _renew(self, store: Store) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            store.renew(self.clock(), self.lease_ttl_s)
            store.release_doubtful()
            self._slices.tick(store, self.clock(), self._limits_all(store))
        except SQLAlchemyError as exc:  # tried again at the next renewal, well before it lapses
            log.warning("renewing the ledger's lease failed: %s", exc)

    def _drop_lease(self, store: Store) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._slices.release_all(store)
            store.drop_lease()
        except SQLAlchemyError as exc:  # it lapses by itself within lease_ttl_s
            log.warning("dropping the ledger's lease at close failed: %s", exc)

    # -- the journal (see _journal.py) --------------------------------------------------

    def _database_file(self) -> str | None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(self.url)
        except ArgumentError:  # not a URL: the ledger never opened, there is no file
            return None
        database = url.database
        if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return None
        return database

    def _open_journal(self, segment_bytes: int) -> Journal | None:
        database = self._database_file()
        if database is None:  # durable() waits for the commit instead
            return None
        try:
            return Journal(journal_dir(database), self._owner, segment_bytes)
        except OSError as exc:
            log.warning("ledger: no journal (%s); replies wait for commits", exc)
            return None

    def _close_journal(self, journal: Journal, store: Store | None, keep: bool) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            journal.close(keep)
            if not keep and store is not None:
                store.drop_journal_mark(self._owner)
        except (OSError, SQLAlchemyError) as exc:  # a mark left behind is only a row
            log.warning("ledger: closing the journal: %s", exc)

    def _replay(self, store: Store) -> None:
        """Write back the journals of ledgers that died, exactly what the database lacks."""
        from sqlalchemy.exc import SQLAlchemyError

        database = self._database_file()
        if database is None:
            return
        try:
            with dead_journals(journal_dir(database)) as dead:
                for journal in dead:
                    done = store.journal_mark(journal.owner)
                    entries, bad = journal.entries()
                    todo = [(seq, item) for seq, item in entries if seq > done]
                    for i in range(0, len(todo), self.max_batch):
                        chunk = todo[i : i + self.max_batch]
                        mark = (journal.owner, chunk[-1][0])
                        if not self._write(store, [item for _, item in chunk], mark):
                            return  # kept: the next sweep tries again
                    if bad:
                        journal.keep_unreadable(bad)
                        log.error("ledger: %d unreadable journal lines kept aside", len(bad))
                    journal.remove()
                    store.drop_journal_mark(journal.owner)
                    store.release_slices(journal.owner)
                    if todo:
                        log.warning("ledger: wrote back %d records of a stopped process", len(todo))
        except (OSError, SQLAlchemyError) as exc:
            log.warning("ledger: replaying journals failed, will retry: %s", exc)

    # -- spill file: records the database refused at close ---------------------------

    def _spill_path(self) -> Path | None:
        """Beside a SQLite file; for a server, this host's spool (one file per database)."""
        import hashlib

        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        from polyroute.config import polyroute_home

        database = self._database_file()
        if database is not None:
            return Path(database + ".spill.jsonl")
        try:
            url = make_url(self.url)
        except ArgumentError:
            return None
        if url.get_backend_name() == "sqlite":  # in memory: nothing outlives the process
            return None
        name = url.set(drivername=url.get_backend_name(), password=None)
        digest = hashlib.sha256(name.render_as_string().encode()).hexdigest()[:16]
        spool = self.spool_dir or polyroute_home() / "spool"
        return spool / f"{url.get_backend_name()}-{digest}.spill.jsonl"

    def _spool(self, pending: _Pending) -> None:
        """Keep records the database server refused in this host's spool, so a reply
        waiting for them goes out; :meth:`_drain_spool` writes them back."""
        path = self._spill_path()
        if path is None:
            return
        try:
            self._spill(pending.items)
        except OSError as exc:  # they stay queued and retried; replies wait
            log.warning("ledger: cannot spool %d records: %s", len(pending.items), exc)
            return
        self._spooled = True
        self._written(pending)

    def _drain_spool(self, store: Store) -> None:
        self._take_spill(store)
        path = self._spill_path()
        self._spooled = path is not None and path.exists()

    def _spill(self, batch: list[SettleItem]) -> None:
        path = self._spill_path()
        if path is None:
            log.error("ledger: %d records lost (no database file to keep them beside)", len(batch))
            return
        if self._database_file() is None:  # a server's spool (a file's directory is its own)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write("".join(encode(item) + "\n" for item in batch))
            f.flush()
            os.fsync(f.fileno())
        log.error("ledger: %d records could not be written; kept in %s", len(batch), path)

    def _take_spill(self, store: Store) -> None:
        """Write back records a previous run could not; the rename lets one process claim them."""
        path = self._spill_path()
        if path is None or not path.exists():
            return
        taken = path.with_suffix(f".{os.getpid()}.taking")
        try:
            path.rename(taken)
        except FileNotFoundError:  # another process claimed it first
            return
        items: list[SettleItem] = []
        bad: list[str] = []
        for line in taken.read_text("utf-8").splitlines():
            try:
                items.append(decode(line)[1])
            except ValueError:  # a torn line must not stop the ledger
                bad.append(line)
        if items and not self._write(store, items):
            taken.rename(path)
            return
        if bad:  # left in the spill file for a person to look at
            with path.open("a", encoding="utf-8") as f:
                f.write("\n".join(bad) + "\n")
            log.error("ledger: %d unreadable lines of %s left in it", len(bad), path)
        taken.unlink()
        if items:
            log.warning("ledger: wrote back %d records from %s", len(items), path)


class _Pending:
    """What the thread took from the record queue: records not yet written, and the
    waiters whose records are all among them (or already written)."""

    __slots__ = ("items", "waiters")

    def __init__(self) -> None:
        self.items: list[SettleItem] = []
        self.waiters: list[_Waiter] = []

    def written(self) -> None:
        """The items are committed: clear them and answer every waiter."""
        self.items.clear()
        self.answer(None)

    def answer(self, error: LedgerError | None) -> None:
        """Answer the waiters: committed if no items are left, else ``error``."""
        for waiter in self.waiters:
            if waiter.set_running_or_notify_cancel():
                if self.items and error is not None:
                    waiter.set_exception(error)
                else:
                    waiter.set_result(None)
        self.waiters.clear()


_Caller = tuple[str, str | None]
"""A call's provider and virtual key."""


class Governing:
    """The limits governing one :data:`_Caller` by one read of the budgets (what
    :meth:`Ledger.governing` answers, for :meth:`Ledger.hold`), and the key of
    the slice a call reserves against, worked out once a UTC day (its periods' keys change
    with the day; its limits only with the next read, which makes a new one of these)."""

    __slots__ = ("_keyed", "limits")

    def __init__(self, limits: dict[str, BudgetLimits]) -> None:
        self.limits = limits
        self._keyed: tuple[int, SliceKey] = (-1, ())  # (UTC day, key), replaced whole

    def slice_key(self, ts: float) -> SliceKey:
        day = int(ts // DAY_S)  # the day the periods' keys are named by
        keyed = self._keyed
        if keyed[0] != day:
            keyed = self._keyed = (day, slice_key(self.limits, ts)[0])
        return keyed[1]


def _scopes(provider: str, virtual_key: str | None) -> list[str]:
    """The budget scopes a call counts against."""
    if virtual_key:
        return [GLOBAL, provider_scope(provider), key_scope(virtual_key)]
    return [GLOBAL, provider_scope(provider)]


def _log_top_up(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("topping up a budget slice failed (requests reserve in the database): %s", exc)


def _due(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _holds(pending: list[SettleItem]) -> bool:
    return any(res is not None and res.targets for _, res in pending)


def _run_call(
    job: _Call, store: Store, settle: Callable[[], bool] | None = None, *, started: bool = False
) -> None:
    """Run ``job`` and hand its result or error to the awaiting caller; the thread lives on.
    ``started``: its future is already marked running."""
    from sqlalchemy.exc import SQLAlchemyError

    if not started and not job.future.set_running_or_notify_cancel():
        return  # its caller was cancelled before the job started: nothing to do
    try:
        try:
            result = job.fn(store)
        except BudgetExceeded:
            if settle is None or not settle():
                raise
            result = job.fn(store)
        job.future.set_result(result)
    except SQLAlchemyError as exc:
        from polyroute.ledger._store import unreachable

        error = LedgerUnavailableError if unreachable(exc) else LedgerError
        job.future.set_exception(error(f"ledger database error: {exc}"))
    except Exception as exc:  # noqa: BLE001 - raised again in the awaiting caller
        job.future.set_exception(exc)
    finally:
        if store.conn.in_transaction():  # a run() that left one open must not block the writer
            store.conn.rollback()


def storage_url(config: Config) -> str:
    """``[storage] url``, else a SQLite file under ``$POLYROUTE_HOME`` (created 0700)."""
    from polyroute.config import polyroute_home

    if config.settings.storage.url:
        return config.settings.storage.url
    home = polyroute_home(config.env)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite:///{home / 'polyroute.db'}"


def config_budgets(config: Config) -> dict[str, BudgetLimits]:
    """The budgets written in the config file, by scope."""
    out: dict[str, BudgetLimits] = {}
    specs = [(GLOBAL, config.settings.budget)] + [
        (provider_scope(pid), p.budget) for pid, p in config.settings.providers.items()
    ]
    for scope, b in specs:
        if b is not None:
            out[scope] = BudgetLimits(b.daily_usd, b.monthly_usd, tuple(b.alert_percents))
    return out


def ledger_for(config: Config, *, hub: EventHub | None = None) -> Ledger:
    """The ledger ``config`` names, with the config's budgets and durability."""
    from polyroute.config import polyroute_home

    storage = config.settings.storage
    return Ledger(
        storage_url(config),
        budgets=config_budgets(config),
        hub=hub,
        durability=storage.durability,
        spool_dir=polyroute_home(config.env) / "spool",
    )


def _periods(daily: float | None, monthly: float | None) -> list[tuple[PeriodKind, float | None]]:
    return [("daily", daily), ("monthly", monthly)]
