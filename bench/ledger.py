"""The usage ledger: write throughput, the latency it adds to a request, a report query.

Run: ./dev python bench/ledger.py [--postgres [URL]]
Measured, on a SQLite file in a temporary directory (WAL, synchronous=NORMAL, as the ledger opens it),
or with --postgres on PostgreSQL: a new database per section on the server at URL (a role that may
CREATE DATABASE), or without a URL on a throwaway server from Debian's postgresql (fsync off):
1. throughput: N records handed over with `Ledger.record()` as fast as possible, then `await
   flush()`; records/s from the first record() to flush() returning, and the caller's cost of one
   record() call. Plain records, and records each settling a live budget reservation.
   Target: at least 5,000 records/s.
2. added latency of one request: `await ledger.reserve(...)` plus `ledger.record(...)` (the settle
   hand-over), with a global and a provider budget configured so reservations go to the database;
   sequential requests after a warm-up. Target: p50 under 1 ms. Also with no budget (fast path)
   and with 32 requests in flight (waves of asyncio.gather), which shows the queueing on the one
   database thread.
3. `usage(by=...)` on the ~100,000 rows written by (1).
4. durability "answered" against "batched": the request of (2) followed by `await
   ledger.durable()` (what the gateway awaits before a reply's last byte: under "answered"
   the record is appended to the journal in record(), so durable() has nothing left to
   wait for; under "batched" nothing), sequentially and 32 in flight.
   Targets: p50 up by at most 0.2 ms; req/s at 32 in flight down by at most 10 %.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import sqlalchemy
from sqlalchemy import func, select, update

from polyroute.ledger import (
    GLOBAL,
    BudgetLimits,
    GroupBy,
    Ledger,
    Reservation,
    UsageRecord,
    provider_scope,
)
from polyroute.ledger._ledger import Durability
from polyroute.ledger._records import period_key, to_nusd
from polyroute.ledger._schema import reservations, spend
from polyroute.ledger._store import Store

N_RECORDS = 50_000
WARMUP = 200
REQUESTS = 2_000
IN_FLIGHT = 32
REPORT_RUNS = 5
TARGET_RPS = 5_000
TARGET_P50_MS = 1.0
TARGET_DURABLE_ADDED_MS = 0.2
TARGET_DURABLE_RPS_LOSS = 0.10
PROVIDERS = ("openai", "anthropic", "google", "mistral", "ollama")
MODELS = tuple(f"model-{i}" for i in range(20))
HOLD_USD = 0.02
COST_USD = 0.0123
DAY_S = 86_400.0


NewUrl = Callable[[str], str]
"""A new, empty database for a section, by name."""
WALL = "wall clock (perf_counter); the ledger's database thread shares the GIL with the caller"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def budgets_for(provider: str) -> dict[str, BudgetLimits]:
    """A global and a provider budget, far above anything the benchmark spends."""
    big = BudgetLimits(daily_usd=1e9, monthly_usd=1e9)
    return {GLOBAL: big, provider_scope(provider): big}


def all_budgets() -> dict[str, BudgetLimits]:
    out: dict[str, BudgetLimits] = {}
    for p in PROVIDERS:
        out.update(budgets_for(p))
    return out


def make_records(n: int, now: float, *, spread_days: int) -> list[UsageRecord]:
    return [
        UsageRecord(
            ts=now - (i % spread_days) * DAY_S if spread_days else now,
            provider=PROVIDERS[i % len(PROVIDERS)],
            model=MODELS[i % len(MODELS)],
            prompt_tokens=420,
            completion_tokens=180,
            cost_usd=COST_USD,
            latency_ms=812.5,
            ttft_ms=210.0,
            status="ok" if i % 50 else "error",
            error_type=None if i % 50 else "RateLimited",
            request_id=f"req-{i}",
        )
        for i in range(n)
    ]


def hold_in_bulk(
    store: Store, records: list[UsageRecord], amount_usd: float, ttl_s: float
) -> list[Reservation]:
    """Live reservations for ``records``, written as `Store.reserve` writes them, in one go.

    (Making 50,000 through `reserve()` would take a minute; what settling costs is the same.)
    """
    amount = to_nusd(amount_usd, up=True)
    rows = []
    held: defaultdict[tuple[str, str], int] = defaultdict(int)
    out = []
    for rec in records:
        targets = [
            (scope, period_key(kind, rec.ts))
            for scope in (GLOBAL, provider_scope(rec.provider))
            for kind in ("daily", "monthly")
        ]
        rid = uuid.uuid4().hex
        rows.append(
            {
                "id": rid,
                "created": rec.ts,
                "expires": rec.ts + ttl_s,
                "amount_nusd": amount,
                "targets": json.dumps(targets),
            }
        )
        for target in targets:
            held[target] += amount
        out.append(Reservation(rid, amount_usd, tuple(targets)))
    with store.write() as c:
        c.execute(reservations.insert(), rows)
        for (scope, period), nusd in held.items():
            c.execute(
                store.insert(spend)
                .values(scope=scope, period=period, spent_nusd=0, reserved_nusd=0)
                .on_conflict_do_nothing()
            )
            c.execute(
                update(spend)
                .where(spend.c.scope == scope, spend.c.period == period)
                .values(reserved_nusd=spend.c.reserved_nusd + nusd)
            )
    return out


def left_over(store: Store) -> tuple[int, int]:
    """Reservations not settled, and nano-dollars still held: both 0 once all settled."""
    with store.read() as c:
        n = c.execute(select(func.count()).select_from(reservations)).scalar_one()
        nusd = c.execute(select(func.coalesce(func.sum(spend.c.reserved_nusd), 0))).scalar_one()
    return int(n), int(nusd)


async def throughput(
    ledger: Ledger, records: list[UsageRecord], holds: list[Reservation] | None
) -> tuple[float, float]:
    """(records/s from the first record() to flush() returning, µs per record() call)."""
    attached: list[Reservation | None] = [*holds] if holds else [None] * len(records)
    pairs = list(zip(records, attached, strict=True))
    record = ledger.record
    t0 = time.perf_counter()
    for rec, res in pairs:
        record(rec, res)
    t1 = time.perf_counter()
    await ledger.flush()
    t2 = time.perf_counter()
    return len(pairs) / (t2 - t0), (t1 - t0) / len(pairs) * 1e6


async def one_request(ledger: Ledger, provider: str, i: int) -> float:
    """Seconds the ledger adds to one request: reserve, hand the record over, and wait for
    it to be as durable as ``[storage] durability`` asks before a reply."""
    t = time.perf_counter()
    now = time.time()
    reservation = await ledger.reserve(
        provider=provider, model="model-1", amount_usd=HOLD_USD, ts=now
    )
    ledger.record(
        UsageRecord(
            ts=now,
            provider=provider,
            model="model-1",
            prompt_tokens=420,
            completion_tokens=180,
            cost_usd=COST_USD,
            latency_ms=812.5,
            request_id=f"lat-{i}",
        ),
        reservation,
    )
    await ledger.durable()
    return time.perf_counter() - t


async def sequential(ledger: Ledger, provider: str) -> list[float]:
    for i in range(WARMUP):
        await one_request(ledger, provider, -i)
    return [await one_request(ledger, provider, i) for i in range(REQUESTS)]


async def concurrent(ledger: Ledger, provider: str) -> tuple[list[float], float]:
    """Per-request latencies with IN_FLIGHT at once, and requests/s over all the waves."""
    for _ in range(WARMUP // IN_FLIGHT):
        await asyncio.gather(*(one_request(ledger, provider, -1) for _ in range(IN_FLIGHT)))
    out: list[float] = []
    t0 = time.perf_counter()
    done = 0
    while done < REQUESTS:
        wave = await asyncio.gather(
            *(one_request(ledger, provider, done + j) for j in range(IN_FLIGHT))
        )
        out.extend(wave)
        done += IN_FLIGHT
    return out, len(out) / (time.perf_counter() - t0)


def latency_row(label: str, secs: list[float], target: bool, extra: str = "") -> str:
    ms = [s * 1000 for s in secs]
    p50, p90, p99 = pct(ms, 50), pct(ms, 90), pct(ms, 99)
    tail = (
        f"p50 < {TARGET_P50_MS:g} ms  {verdict(p50 < TARGET_P50_MS)}" if target else "(no target)"
    )
    return f"  {label:<34} {p50:8.3f} {p90:8.3f} {p99:8.3f}   {tail}{extra}"


async def section_throughput(url: str, now: float) -> None:
    print(f"1. throughput: {N_RECORDS:,} records handed over with record(), then await flush()")
    print(f"  {'case':<34} {'records/s':>10} {'record() µs':>12}   target")
    rows: list[tuple[str, float, float]] = []
    ledger = Ledger(url)
    await ledger.run(lambda s: None)  # the database is open and migrated before timing
    rps, us = await throughput(ledger, make_records(N_RECORDS, now, spread_days=30), None)
    rows.append(("plain records, no budget", rps, us))
    await ledger.aclose()

    ledger = Ledger(url, budgets=all_budgets())
    records = make_records(N_RECORDS, now, spread_days=0)
    ttl = ledger.reservation_ttl_s
    holds = await ledger.run(lambda s: hold_in_bulk(s, records, HOLD_USD, ttl))
    rps, us = await throughput(ledger, records, holds)
    rows.append(("each settling a reservation", rps, us))
    unsettled, held = await ledger.run(left_over)
    await ledger.aclose()
    for label, rps, us in rows:
        ok = verdict(rps >= TARGET_RPS)
        print(f"  {label:<34} {rps:10,.0f} {us:12.2f}   >= {TARGET_RPS:,}/s  {ok}")
    print(f"  afterwards: {unsettled} reservations unsettled, ${held / 1e9:.6f} still held")


async def section_latency(new_url: NewUrl) -> None:
    print(f"2. reserve + settle hand-over, per request ({REQUESTS:,} after {WARMUP} warm-up), ms")
    print(f"  {'case':<34} {'p50':>8} {'p90':>8} {'p99':>8}   target")
    # "batched": durable() returns at once, so this is the hand-over alone (see 4.)
    ledger = Ledger(new_url("latency"), budgets=budgets_for("openai"), durability="batched")
    secs = await sequential(ledger, "openai")
    print(latency_row("global + provider budget", secs, True))
    ledger_fast = Ledger(new_url("nobudget"), durability="batched")
    secs = await sequential(ledger_fast, "openai")
    print(latency_row("no budget (fast path)", secs, True))
    await ledger_fast.aclose()
    secs, rate = await concurrent(ledger, "openai")
    print(latency_row(f"budgets, {IN_FLIGHT} in flight", secs, False, f"  {rate:,.0f} req/s"))
    await ledger.flush()
    unsettled, held = await ledger.run(left_over)
    await ledger.aclose()
    print(f"  afterwards: {unsettled} reservations unsettled, ${held / 1e9:.6f} still held")


async def section_durability(new_url: NewUrl) -> None:
    print("4. durability: the request of (2) + await durable(), global + provider budget, ms")
    print(f"  {'case':<34} {'p50':>8} {'p90':>8} {'p99':>8}")
    p50: dict[str, float] = {}
    rate: dict[str, float] = {}
    modes: tuple[Durability, ...] = ("batched", "answered")
    for durability in modes:
        url = new_url(f"durability_{durability}")
        ledger = Ledger(url, budgets=budgets_for("openai"), durability=durability)
        secs = await sequential(ledger, "openai")
        print(latency_row(f"{durability}, sequential", secs, False))
        p50[durability] = pct([x * 1000 for x in secs], 50)
        secs, rate[durability] = await concurrent(ledger, "openai")
        print(
            latency_row(
                f"{durability}, {IN_FLIGHT} in flight",
                secs,
                False,
                f"  {rate[durability]:,.0f} req/s",
            )
        )
        await ledger.aclose()
    added = p50["answered"] - p50["batched"]
    ok = verdict(added <= TARGET_DURABLE_ADDED_MS)
    print(
        f"  answered vs batched: p50 {added:+.3f} ms   target <= +{TARGET_DURABLE_ADDED_MS:g} ms  {ok}"
    )
    loss = 1 - rate["answered"] / rate["batched"]
    ok = verdict(loss <= TARGET_DURABLE_RPS_LOSS)
    print(
        f"  answered vs batched: req/s at {IN_FLIGHT} in flight {-100 * loss:+.1f} %"
        f"   target >= -{100 * TARGET_DURABLE_RPS_LOSS:g} %  {ok}"
    )


async def section_report(url: str) -> None:
    ledger = Ledger(url)
    count = await ledger.run(lambda s: s.count())
    print(f"3. usage(by=...) on {count:,} rows (median of {REPORT_RUNS}; includes its flush)")
    groupings: tuple[GroupBy, ...] = ("provider", "model", "day")
    for by in groupings:
        times = []
        for _ in range(REPORT_RUNS):
            t = time.perf_counter()
            report = await ledger.usage(by=by)
            times.append((time.perf_counter() - t) * 1000)
        print(
            f"  by {by:<10} {statistics.median(times):8.1f} ms"
            f"   ({len(report.rows)} groups, {report.requests:,} requests)"
        )
    await ledger.aclose()


async def main_async(new_url: NewUrl) -> None:
    url = new_url("throughput")
    await section_throughput(url, time.time())
    print()
    await section_latency(new_url)
    print()
    await section_report(url)
    print()
    await section_durability(new_url)


def postgres_databases(server_url: str) -> NewUrl:
    """A new database on the server at ``server_url`` for each name."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    conninfo = psycopg.conninfo.make_conninfo(
        host=base.host, port=base.port, user=base.username, password=base.password,
        dbname=base.database or "postgres",
    )  # fmt: skip

    def new(name: str) -> str:
        database = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return base.set(database=database).render_as_string(hide_password=False)

    return new


def main() -> None:
    args = sys.argv[1:]
    postgres = bool(args) and args[0] == "--postgres"
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="polyroute-bench-") as tmp:
        if not postgres:
            print(
                f"ledger benchmark — SQLite {sqlite3.sqlite_version} file in a temp dir (WAL, "
                f"synchronous=NORMAL), SQLAlchemy {sqlalchemy.__version__}, "
                f"Python {sys.version.split()[0]}"
            )
            print(WALL)
            print()
            asyncio.run(main_async(lambda name: f"sqlite:///{Path(tmp) / name}.db"))
        else:
            server = None
            if len(args) > 1:
                url = args[1]
            else:
                sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
                from servers.postgres import PostgresServer

                server = PostgresServer()
                url = server.url()
            try:
                print(
                    f"ledger benchmark — PostgreSQL at {url.split('@')[-1]}"
                    f"{' (throwaway, fsync off)' if server else ''}, psycopg 3, "
                    f"SQLAlchemy {sqlalchemy.__version__}, Python {sys.version.split()[0]}"
                )
                print(WALL)
                print()
                asyncio.run(main_async(postgres_databases(url)))
            finally:
                if server is not None:
                    server.remove()
    print()
    print(f"total {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
