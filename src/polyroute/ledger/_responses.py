"""Stored Responses API answers (the gateway's ``store`` and ``previous_response_id``).

A stored response belongs to the virtual key that made it: ``key`` ``None`` is the
gateway's admin (or an open gateway), who sees every one; a key sees only its own.

Writes stay off the reply's path, as usage records do: :meth:`ResponseStore.put`
queues the row and returns; every :data:`WINDOW_S` the ledger's thread commits what
is queued in one transaction (group commit). A commit per answer, waited for, cost
more than the rest of a request's work (two thread hops and a WAL write: +20-40 %
a request in ``bench/gateway.py``; +30 % even unwaited but unbatched). A commit costs
about 150 µs of CPU whatever it holds (the thread hop and the transaction), a row
about 12 µs more (``bench/responses_cost.py``): 50 ms windows hold some 50 rows at
1,000 requests/s, where 10 ms ones held 10 and cost twice as much a row. What this
costs in consistency is closed where it shows: a read in this process first commits
this process's queue; a read in another worker (``serve --workers N``) that misses a
response made in the last :data:`PENDING_S` retries until it lands (ids carry their
creation time). A process killed within a window loses that window's stored
responses (their usage records are in the journal).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyroute._frozen import fast_init
from polyroute.errors import LedgerError

if TYPE_CHECKING:
    from polyroute.ledger._ledger import Ledger
    from polyroute.ledger._store import Store

log = logging.getLogger("polyroute.ledger")

PENDING_S = 1.0
"""How long after its creation a response may not be readable from other workers yet."""
RETRY_S = 0.02
WINDOW_S = 0.05
"""How long queued responses wait for company before they are written."""


def new_response_id() -> str:
    """``resp_``, the time in milliseconds (12 hex digits), then 64 random bits: ids sort
    by age, so inserts append to the index, and a reader can tell a recent one."""
    return f"resp_{int(time.time() * 1000):012x}{random.getrandbits(64):016x}"


def item_id(prefix: str, response_id: str, index: int) -> str:
    """The id of a response's ``index``-th output item: ``prefix``, the response id's digits,
    the index; so an ``item_reference`` to it names the stored response that holds it."""
    return f"{prefix}{response_id[5:]}{index:02x}"


def holder(item: str) -> str | None:
    """The id of the response whose output item ``item`` is (see :func:`item_id`), if it
    is one of ours."""
    digits = item.partition("_")[2]
    return f"resp_{digits[:28]}" if len(digits) > 28 else None


def _recent(response_id: str) -> bool:
    try:
        made = int(response_id[5:17], 16) / 1000
    except ValueError:
        return False
    return response_id.startswith("resp_") and 0 <= time.time() - made < PENDING_S


@fast_init
@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    virtual_key: str | None
    created_at: float
    model: str
    input: str
    """The conversation up to this answer: input items, as a JSON array."""
    response: str
    """The Response object as it was rendered (JSON)."""


def _insert(rows: Sequence[tuple[Any, ...]]) -> Callable[[Store], None]:
    """On the driver's cursor (see ``_store._Prepared``): SQLAlchemy's execution would cost
    more than the write."""

    def job(store: Store) -> None:
        from polyroute.ledger._store import RESPONSE_COLUMNS

        with store.driver_write() as cur:
            store.fast.add_response.many(
                cur, [dict(zip(RESPONSE_COLUMNS, r, strict=True)) for r in rows]
            )

    return job


def _visible(table: Any, response_id: str, key: str | None) -> Any:
    where = table.c.id == response_id
    return where if key is None else where & (table.c.virtual_key == key)


def _get(response_id: str, key: str | None) -> Callable[[Store], StoredResponse | None]:
    def job(store: Store) -> StoredResponse | None:
        from sqlalchemy import select

        from polyroute.ledger._schema import responses as t

        with store.read() as c:
            row = c.execute(select(t).where(_visible(t, response_id, key))).first()
        if row is None:
            return None
        return StoredResponse(
            row.id, row.virtual_key, row.created_at, row.model, row.input, row.response
        )

    return job


def _delete(response_id: str, key: str | None) -> Callable[[Store], bool]:
    def job(store: Store) -> bool:
        from polyroute.ledger._schema import responses as t

        with store.write() as c:
            return bool(c.execute(t.delete().where(_visible(t, response_id, key))).rowcount)

    return job


class ResponseStore:
    """Stored responses in ``ledger``'s database (see the module docs). One per event loop."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._rows: list[tuple[Any, ...]] = []
        self._writing: asyncio.Task[None] | None = None
        self._now = asyncio.Event()
        """Set: write the queue without waiting out the window (a reader waits for it)."""

    def put(self, stored: StoredResponse) -> None:
        """Queue ``stored``; it is committed within moments (group commit)."""
        s = stored
        self._rows.append((s.id, s.virtual_key, s.created_at, s.model, s.input, s.response))
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._rows:
                if not self._now.is_set():
                    timer = loop.call_later(WINDOW_S, self._now.set)
                    await self._now.wait()
                    timer.cancel()
                self._now.clear()
                rows, self._rows = self._rows, []
                try:
                    await self.ledger.run(_insert(rows))
                except LedgerError:
                    log.exception("ledger: %d stored responses lost", len(rows))
        finally:
            self._writing = None

    async def flush(self) -> None:
        """Return once every response queued so far is committed (or logged as lost)."""
        writing = self._writing
        if writing is not None:
            self._now.set()
            await asyncio.shield(writing)

    async def get(self, response_id: str, key: str | None) -> StoredResponse | None:
        """The stored response ``key`` may see, or ``None``."""
        await self.flush()
        while True:
            stored = await self.ledger.run(_get(response_id, key))
            if stored is not None or not _recent(response_id):
                return stored
            await asyncio.sleep(RETRY_S)  # another worker may not have committed it yet

    async def delete(self, response_id: str, key: str | None) -> bool:
        """Delete the stored response ``key`` may see; whether there was one."""
        if await self.get(response_id, key) is None:
            return False
        return await self.ledger.run(_delete(response_id, key))
