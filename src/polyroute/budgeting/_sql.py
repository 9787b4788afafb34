"""The optimizer's SQL: daily usage per provider, and the budget history table.

Run on the ledger's database thread (through :meth:`Ledger.run` or a transaction's
``also`` callback), so importing it is left to the functions that need it.
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Float, case, cast, func, select

from polyroute.budgeting._model import Change, DayUsage, HistoryEntry
from polyroute.ledger._records import to_usd
from polyroute.ledger._schema import budget_history, usage

if TYPE_CHECKING:
    from polyroute.ledger._store import Store


def daily_usage(store: Store, since_day: str) -> list[DayUsage]:
    """Requests, failures and cost per provider and UTC day, from ``since_day`` on."""
    q = (
        select(
            usage.c.provider,
            usage.c.day,
            func.count().label("requests"),
            func.coalesce(func.sum(case((usage.c.status != "ok", 1), else_=0)), 0).label("failed"),
            func.coalesce(func.sum(cast(usage.c.cost_nusd, Float)), 0).label("cost"),
        )
        .where(usage.c.day >= since_day)
        .group_by(usage.c.provider, usage.c.day)
        .order_by(usage.c.provider, usage.c.day)
    )
    with store.read() as c:
        rows = c.execute(q).all()
    return [
        DayUsage(r.provider, date.fromisoformat(r.day), r.requests, r.failed, to_usd(r.cost))
        for r in rows
    ]


def last_applied(c: Connection, source: str) -> float | None:
    """When ``source`` last applied an allocation (Unix time), if ever."""
    ts = c.execute(
        select(func.max(budget_history.c.ts)).where(budget_history.c.source == source)
    ).scalar_one()
    return None if ts is None else float(ts)


def add_entry(
    c: Connection, ts: float, source: str, total_usd: float, method: str, changes: list[Change]
) -> None:
    allocations = json.dumps([ch.as_dict() for ch in changes])
    c.execute(
        budget_history.insert().values(
            ts=ts, source=source, total_usd=total_usd, method=method, allocations=allocations
        )
    )


def entries(store: Store) -> list[HistoryEntry]:
    """Every recorded allocation, oldest first."""
    with store.read() as c:
        rows = c.execute(select(budget_history).order_by(budget_history.c.id)).all()
    return [
        HistoryEntry(
            r.id,
            r.ts,
            r.source,
            r.total_usd,
            r.method,
            tuple(Change.from_dict(d) for d in json.loads(r.allocations)),
        )
        for r in rows
    ]
