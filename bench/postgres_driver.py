"""asyncpg against psycopg 3 on the ledger's own statements, and the ledger as it runs.

Run: ./dev python bench/postgres_driver.py [postgresql://USER@HOST:PORT/DB]
Without a URL it starts a throwaway server from Debian's postgresql (as the tests do).

One request is what a budgeted gateway request costs the database: a reservation (one
transaction: the conditional hold on the global and a provider budget, daily and monthly,
and the reservation row) and its settle (one transaction: take the reservation, insert the
usage row, move the four spend rows). The statements are the ledger's, compiled by
SQLAlchemy for each driver (``_store._Statements`` / ``_Fast``), run on the driver's own
connections: 1 and 32 requests in flight, each on its own connection from a pool of 32.
Last, the ledger itself (psycopg 3 on its database thread, one connection, settles in group
commits) under durability "answered" (a reply waits for its record's commit).
Printed: requests/s and the p50 / p99 of one request.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url

from polyroute.ledger import GLOBAL, BudgetLimits, Ledger, UsageRecord, provider_scope
from polyroute.ledger._records import period_key, to_nusd
from polyroute.ledger._store import Store, _Fast, _Prepared, _Statements, _usage_row

REQUESTS = 2_000
WARMUP = 100
POOL = 32
SCOPES = (GLOBAL, provider_scope("p"))
HOLD = to_nusd(0.01)
LIMIT = to_nusd(1e9)


class Statements:
    """The ledger's request-path statements compiled for one driver's SQL dialect."""

    def __init__(self, dialect: Any) -> None:
        sql = _Statements(postgresql.insert)
        fast = _Fast(sql, dialect)
        self.hold = _Prepared(sql.hold, dialect)
        self.add_reservation = _Prepared(
            sql.add_reservation,
            dialect,
            ["id", "created", "expires", "amount_nusd", "targets", "owner"],
        )
        self.take = fast.take_reservation
        self.add_usage = fast.add_usage
        self.move = fast.move


def request_rows(ts: float) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    periods = [(s, period_key(k, ts)) for s in SCOPES for k in ("daily", "monthly")]
    holds = [{"b_scope": s, "b_period": p, "b_amount": HOLD, "b_limit": LIMIT} for s, p in periods]
    rid = uuid.uuid4().hex
    reservation = {
        "id": rid,
        "created": ts,
        "expires": ts + 900,
        "amount_nusd": HOLD,
        "targets": json.dumps(periods),
        "owner": "bench",
    }
    record = UsageRecord(
        ts=ts, provider="p", model="m", prompt_tokens=10, completion_tokens=20, cost_usd=0.005
    )
    return holds, reservation, _usage_row(record, to_nusd(0.005))


def moves(ts: float) -> list[dict[str, Any]]:
    return [
        {
            "scope": s,
            "period": period_key(k, ts),
            "spent_nusd": to_nusd(0.005),
            "reserved_nusd": -HOLD,
        }
        for s in SCOPES
        for k in ("daily", "monthly")
    ]


async def asyncpg_request(conn: asyncpg.Connection, st: Statements) -> None:
    ts = time.time()
    holds, reservation, usage = request_rows(ts)
    async with conn.transaction():
        for h in holds:
            assert await conn.fetchrow(st.hold.sql, *st.hold._args(h)) is not None
        await conn.execute(st.add_reservation.sql, *st.add_reservation._args(reservation))
    async with conn.transaction():
        await conn.fetch(st.take.sql, *st.take._args({"id": reservation["id"]}))
        await conn.execute(st.add_usage.sql, *st.add_usage._args(usage))
        for m in moves(ts):
            await conn.fetch(st.move.sql, *st.move._args(m))


async def psycopg_request(conn: psycopg.AsyncConnection[Any], st: Statements) -> None:
    ts = time.time()
    holds, reservation, usage = request_rows(ts)
    async with conn.transaction(), conn.cursor() as cur:
        for h in holds:
            await cur.execute(st.hold.sql, st.hold._args(h))
            assert await cur.fetchone() is not None
        await cur.execute(st.add_reservation.sql, st.add_reservation._args(reservation))
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(st.take.sql, st.take._args({"id": reservation["id"]}))
        await cur.execute(st.add_usage.sql, st.add_usage._args(usage))
        for m in moves(ts):
            await cur.execute(st.move.sql, st.move._args(m))


async def measure(
    pool: asyncio.Queue[Any], one: Callable[[Any], Awaitable[None]], in_flight: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def request() -> None:
        conn = await pool.get()
        try:
            t0 = time.perf_counter()
            await one(conn)
            latencies.append(time.perf_counter() - t0)
        finally:
            pool.put_nowait(conn)

    for _ in range(WARMUP):
        await request()
    latencies.clear()
    start = time.perf_counter()
    for i in range(0, REQUESTS, in_flight):
        await asyncio.gather(*(request() for _ in range(min(in_flight, REQUESTS - i))))
    return REQUESTS / (time.perf_counter() - start), latencies


def show(label: str, rps: float, latencies: list[float]) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(
        f"  {label:<34} {rps:>8,.0f} req/s   p50 {q[49] * 1e3:6.2f} ms   p99 {q[98] * 1e3:6.2f} ms"
    )


async def drivers(url: str) -> None:
    u = make_url(url)
    dsn = dict(host=u.host, port=u.port, user=u.username, password=u.password, database=u.database)
    Store(url).close()  # the schema, by the ledger's migrations

    a_pool: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(POOL):
        a_pool.put_nowait(await asyncpg.connect(**dsn))
    a_st = Statements(PGDialect_asyncpg())
    p_pool: asyncio.Queue[Any] = asyncio.Queue()
    conninfo = psycopg.conninfo.make_conninfo(
        host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database
    )
    for _ in range(POOL):
        p_pool.put_nowait(await psycopg.AsyncConnection.connect(conninfo))
    p_st = Statements(PGDialect_psycopg())

    print(f"reserve + settle, {REQUESTS:,} requests, the ledger's statements on each driver:")
    for in_flight in (1, 32):
        rps, lat = await measure(a_pool, lambda c: asyncpg_request(c, a_st), in_flight)
        show(f"asyncpg, {in_flight} in flight", rps, lat)
        rps, lat = await measure(p_pool, lambda c: psycopg_request(c, p_st), in_flight)
        show(f"psycopg 3 (async), {in_flight} in flight", rps, lat)
    while not a_pool.empty():
        await a_pool.get_nowait().close()
    while not p_pool.empty():
        await p_pool.get_nowait().close()


async def ledger_path(url: str) -> None:
    budgets = {s: BudgetLimits(daily_usd=1e9, monthly_usd=1e9) for s in SCOPES}
    ledger = Ledger(url, budgets=budgets, durability="answered")
    latencies: list[float] = []

    async def request() -> None:
        t0 = time.perf_counter()
        held = await ledger.reserve(provider="p", model="m", amount_usd=0.01, ts=time.time())
        ledger.record(
            UsageRecord(
                ts=time.time(),
                provider="p",
                model="m",
                prompt_tokens=10,
                completion_tokens=20,
                cost_usd=0.005,
            ),
            held,
        )
        await ledger.durable()
        latencies.append(time.perf_counter() - t0)

    print("the ledger (psycopg 3 on its thread, one connection), reserve + record + durable():")
    for in_flight in (1, 32):
        for _ in range(WARMUP):
            await request()
        latencies.clear()
        start = time.perf_counter()
        for i in range(0, REQUESTS, in_flight):
            await asyncio.gather(*(request() for _ in range(min(in_flight, REQUESTS - i))))
        show(f"Ledger, {in_flight} in flight", REQUESTS / (time.perf_counter() - start), latencies)
    await ledger.aclose()


def main() -> None:
    server = None
    if len(sys.argv) > 1:
        url = sys.argv[1]
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from servers.postgres import PostgresServer

        server = PostgresServer()
        url = server.create_database()
        print(f"a throwaway PostgreSQL (fsync off) at {server.url()}")
    try:
        asyncio.run(drivers(url))
        asyncio.run(ledger_path(url))
    finally:
        if server is not None:
            server.remove()


if __name__ == "__main__":
    main()
