"""The ledger's SQL, on one connection owned by the ledger's database thread.

Budget reservation is one conditional ``UPDATE`` per (scope, period) inside a
write transaction: ``reserved += amount WHERE spent + reserved + amount <=
limit``. The database evaluates the check and the increment together, so
threads, processes and replicas sharing the database cannot
together pass a limit. On SQLite the transaction starts with ``BEGIN
IMMEDIATE`` (the write lock first), which makes it serializable across
processes; ``busy_timeout`` queues the waiters. On PostgreSQL (read committed)
the upsert waits for the row's lock and re-checks its ``WHERE`` on the row's
latest version, so hosts cannot pass a limit either.

A hold belongs to a live process. Each ledger that holds money keeps a lease
row (its owner id, an expiry it renews every few seconds); its reservations
name it as their owner. A sweep, run by any process, releases the
reservations whose owner's lease has lapsed (a killed process; never the
sweeper's own, which is alive) and those past their own expiry (made before
leases existed, or held far too long). All of it is plain SQL through
SQLAlchemy Core, so a shared PostgreSQL works alike.

WAL with ``synchronous=NORMAL``: a committed transaction survives the
process being killed; only an OS crash or power loss can drop the last
commits (``FULL`` would fsync every reservation, costing milliseconds).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, NoReturn

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Row,
    and_,
    bindparam,
    case,
    cast,
    create_engine,
    delete,
    event,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    OperationalError,
    SQLAlchemyError,
    TimeoutError,
)
from sqlalchemy.pool import NullPool

from polyroute.errors import BudgetExceeded, LedgerError, LedgerUnavailableError, UnknownKeyError
from polyroute.ledger._keys import VirtualKey, utc
from polyroute.ledger._records import (
    MAX_SUM_NUSD,
    BudgetLimits,
    BudgetStatus,
    GroupBy,
    PeriodKind,
    PeriodStatus,
    Reservation,
    UsageRecord,
    UsageReport,
    UsageRow,
    day_of,
    key_scope,
    period_key,
    to_nusd,
    to_usd,
)
from polyroute.ledger._schema import (
    alerts,
    budgets,
    journal_marks,
    leases,
    migrate,
    reservations,
    responses,
    spend,
    usage,
    virtual_keys,
)
from polyroute.ledger._slices import SLICE_PREFIX, is_slice

KINDS: tuple[PeriodKind, ...] = ("daily", "monthly")
RESPONSE_COLUMNS = ("id", "virtual_key", "created_at", "model", "input", "response")
RESERVATION_COLUMNS = ("id", "created", "expires", "amount_nusd", "targets", "owner")
SettleItem = tuple[UsageRecord, Reservation | None]
GroupedReservation = tuple[Mapping[str, BudgetLimits], float, float]
"""For :meth:`Store.reserve_group`: a reservation's limits, amount (USD) and time."""


@dataclass(frozen=True, slots=True)
class FiredAlert:
    scope: str
    kind: PeriodKind
    period: str
    percent: float
    spent_usd: float
    limit_usd: float


class _Statements:
    """Every statement of the request path, built once with bound parameters.

    Building a SQLAlchemy statement costs far more than SQLite running it
    (about 100 µs against 5), so the hot path only executes these.
    """

    def __init__(self, insert: Any) -> None:
        b = bindparam
        hold = insert(spend).values(
            scope=b("b_scope"), period=b("b_period"), spent_nusd=0, reserved_nusd=b("b_amount")
        )
        # A new row takes the amount (the caller checked it fits the limit alone); an existing
        # one only if spent + reserved + amount stays within the limit. No row returned:
        # refused (RETURNING, as SQLAlchemy's psycopg gives no rowcount for an INSERT).
        self.hold = hold.on_conflict_do_update(
            index_elements=["scope", "period"],
            set_={"reserved_nusd": spend.c.reserved_nusd + hold.excluded.reserved_nusd},
            where=spend.c.spent_nusd + spend.c.reserved_nusd + hold.excluded.reserved_nusd
            <= b("b_limit"),
        ).returning(spend.c.reserved_nusd)
        self.read_spend = select(spend.c.spent_nusd, spend.c.reserved_nusd).where(
            spend.c.scope == b("b_scope"), spend.c.period == b("b_period")
        )
        self.add_reservation = reservations.insert()
        move = insert(spend)
        self.move = move.on_conflict_do_update(
            index_elements=["scope", "period"],
            set_={
                "spent_nusd": _capped(spend.c.spent_nusd, move.excluded.spent_nusd),
                # a new row was never reserved against, so its reserved delta is zero
                "reserved_nusd": _capped(spend.c.reserved_nusd, move.excluded.reserved_nusd),
            },
        )
        mark = insert(journal_marks)
        self.mark_journal = mark.on_conflict_do_update(
            index_elements=["owner"], set_={"seq": mark.excluded.seq}
        )
        lease = insert(leases).values(owner=b("b_owner"), expires_at=b("b_until"))
        self.lease = lease.on_conflict_do_update(
            index_elements=["owner"], set_={"expires_at": lease.excluded.expires_at}
        )
        self.fire_alert = (
            insert(alerts)
            .values(
                scope=b("b_scope"), period=b("b_period"), percent=b("b_pct"), fired_at=b("b_at")
            )
            .on_conflict_do_nothing()
        )
        vk = virtual_keys.c
        # a key with its budget: the join builds the scope as key_scope() does ("key:" || id)
        self.keys = select(
            vk.id,
            vk.name,
            vk.prefix,
            vk.models,
            vk.created_at,
            vk.revoked_at,
            budgets.c.daily_usd,
            budgets.c.monthly_usd,
            vk.rpm,
            vk.tpm,
        ).select_from(
            virtual_keys.outerjoin(budgets, budgets.c.scope == literal(key_scope("")) + vk.id)
        )
        # the gateway's check of every request: one lookup in the unique index on the hash
        self.active_key_by_hash = self.keys.where(
            vk.secret_hash == b("b_hash"), vk.revoked_at.is_(None)
        )


class _Prepared:
    """A statement compiled once to the driver's SQL and run on the driver's cursor.

    SQLAlchemy's execution of even a prebuilt statement costs about 80 µs against
    SQLite's 10: too much for the settle that a reply waits on under durability
    "answered" (``bench/ledger.py`` section 4). Literal values compiled into bound
    parameters (``_capped``'s ceiling) are filled in from the compiled defaults.
    """

    def __init__(
        self,
        stmt: Any,
        dialect: Any,
        keys: Sequence[str] | None = None,
        around: str | None = None,
    ) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        self.sql: str = compiled.string
        if around is not None:  # SQL of our own around it (``{inner}``), with more parameters
            self.sql = around.replace("{inner}", compiled.string)
        self._defaults: dict[str, Any] = {k: bp.effective_value for k, bp in compiled.binds.items()}
        self._order: list[str] | None = (
            list(compiled.positiontup or ()) if dialect.positional else None
        )

    def _args(self, row: Mapping[str, Any]) -> Any:
        if self._order is None:
            return {**self._defaults, **row}
        return tuple(row[k] if k in row else self._defaults[k] for k in self._order)

    def rows(self, cur: Any, row: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return self.sent(cur, row)()

    def run(self, cur: Any, row: Mapping[str, Any]) -> None:
        """Run it, its result unread (in a pipeline: queued, not waited for)."""
        cur.execute(self.sql, self._args(row))

    def sent(self, cur: Any, row: Mapping[str, Any]) -> Callable[[], list[tuple[Any, ...]]]:
        """Run it; its rows when the returned function is called. In
        :meth:`Store.driver_write`'s pipeline (PostgreSQL) the statement is queued and its
        rows are waited for only then; a driver's cursor has them at once."""
        if _is_pipe(cur):
            reader: Callable[[], list[tuple[Any, ...]]] = cur.execute(self.sql, self._args(row))
            return reader
        cur.execute(self.sql, self._args(row))
        rows = list(cur.fetchall())
        return lambda: rows


_NOTHING_CHANGED = "polyroute: no row to change (a budget hold refused, or a reservation released)"
"""What a :class:`_Sure` statement that changed nothing fails with, in the server's log."""

_FAILS_IF_NOTHING = (
    "WITH done AS ({inner}) SELECT CAST(CASE count(*) WHEN 0 THEN "
    f"'{_NOTHING_CHANGED}' ELSE '1' END AS integer) FROM done"
)


def _is_pipe(cur: Any) -> bool:
    """Whether ``cur`` (what :meth:`Store.driver_write` yields) is a ``_pgpipe.Pipe``, not
    a driver's cursor."""
    return not hasattr(cur, "fetchall")


class _Sure:
    """A statement that must change a row, or else its transaction is left: :meth:`make`
    raises the ``failure`` it is given when the statement changed none (a hold refused,
    a reservation no longer as held).

    On a driver's cursor the answer is there at once. In PostgreSQL's pipeline the
    statement is queued in a form that fails when it changed nothing (a cast of its own
    message to an integer, which is what the server's log shows), which aborts the
    transaction on the server: the statements after it, the commit included, are queued
    without waiting for its answer, and the failure comes out of the commit.
    A reservation so waits for the server once, where reading each hold's answer first
    made two waits."""

    def __init__(self, stmt: Any, dialect: Any) -> None:
        self.plain = _Prepared(stmt, dialect)
        """The statement itself: its rows (RETURNING), none if it changed nothing."""
        self._failing = _Prepared(stmt, dialect, around=_FAILS_IF_NOTHING)

    def make(self, cur: Any, row: Mapping[str, Any], failure: Exception) -> Callable[[], object]:
        """Run it; return what waits for its answer (``failure`` raised from it too)."""
        if _is_pipe(cur):
            reader: Callable[[], object] = cur.execute(
                self._failing.sql, self._failing._args(row), refusal=failure
            )
            return reader
        if not self.plain.rows(cur, row):
            raise failure
        return lambda: None


_MOVE_ALERTING = """WITH moved AS ({inner})
INSERT INTO {alerts} (scope, period, percent, fired_at)
SELECT CAST(%(b_scope)s AS varchar), CAST(%(b_period)s AS varchar), t.pct,
       CAST(%(b_at)s AS float8)
FROM moved, unnest(CAST(%(b_pcts)s AS float8[]), CAST(%(b_floors)s AS bigint[])) AS t(pct, floor)
WHERE moved.spent_nusd >= t.floor
ON CONFLICT DO NOTHING
RETURNING percent, (SELECT spent_nusd FROM moved)"""
"""PostgreSQL: a spend move (``{inner}``) and the alert rows of the thresholds (percent,
nano-USD floor) its new spend reaches; the rows fired just now come back with it."""


class _Shape:
    """One column list's INSERT of many rows, its SQL per number of rows."""

    def __init__(self, table: Any, dialect: Any, keys: Sequence[str]) -> None:
        one = table.insert().inline().compile(dialect=dialect, column_keys=list(keys))
        head, _, group = one.string.partition(" VALUES ")
        if dialect.positional:  # SQLite: "(?, ?, ...)"
            self.order: list[str] = list(one.positiontup or ())
        else:  # psycopg: "(%(ts)s, ...)", made positional so that rows can repeat it
            self.order = re.findall(r"%\((\w+)\)s", group)
            group = re.sub(r"%\(\w+\)s", "%s", group)
        self._head, self._group = f"{head} VALUES ", group
        # bound parameters per statement: SQLite before 3.32 allowed 999
        most = 999 if dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 32) else 9999
        self.max_rows = 1 << ((most // len(self.order)).bit_length() - 1)
        self._sql: dict[int, str] = {}

    def insert(self, cur: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        order = self.order
        done = 0
        while done < len(rows):
            n = min(self.max_rows, 1 << ((len(rows) - done).bit_length() - 1))
            sql = self._sql.get(n)
            if sql is None:
                sql = self._sql[n] = self._head + ", ".join([self._group] * n)
            cur.execute(sql, [row[k] for row in rows[done : done + n] for k in order])
            done += n


class _InsertMany:
    """An INSERT of many rows as a few multi-row statements, one per power of two of rows.

    ``executemany`` steps SQLite once per row and hands the interpreter lock back at each
    step. While the event loop is busy, the ledger's thread then waits for the lock on
    every row, up to the switch interval: under ``bench/gateway.py``'s load a row took
    0.5 ms and a batch of 1,400 rows 950 ms, and budgeted requests queued behind it. A
    statement of many rows waits once.

    On SQLite a ``None`` is not bound but left out: the sqlite3 module looks up an adapter
    for every ``None`` it binds, and on CPython 3.11 that lookup raises and formats an
    ``AttributeError`` it then drops (about 3,300 instructions a value, holding the
    interpreter lock; a chat call's usage row has five). A nullable column without a
    default left out is NULL all the same, so each run of rows that leave the same ones
    ``None`` is a statement of its own (runs, not groups: rows keep their order, and so
    their ids); a ``None`` in any other column is bound, and refused, as before.
    """

    def __init__(self, table: Any, dialect: Any, keys: Sequence[str]) -> None:
        self._table, self._dialect, self._keys = table, dialect, list(keys)
        full = _Shape(table, dialect, keys)
        self.max_rows = full.max_rows
        self._shapes: dict[tuple[str, ...], _Shape] = {(): full}
        self._nullable: tuple[str, ...] = ()
        if dialect.name == "sqlite":
            columns = table.c
            self._nullable = tuple(
                k for k in keys if columns[k].nullable and columns[k].server_default is None
            )

    def many(self, cur: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        nullable = self._nullable
        if not nullable:
            self._shapes[()].insert(cur, rows)
            return
        run: list[Mapping[str, Any]] = []
        run_nulls: tuple[str, ...] = ()
        for row in rows:
            nulls = tuple([k for k in nullable if row[k] is None])
            if nulls != run_nulls and run:
                self._shape(run_nulls).insert(cur, run)
                run = []
            run_nulls = nulls
            run.append(row)
        if run:
            self._shape(run_nulls).insert(cur, run)

    def _shape(self, nulls: tuple[str, ...]) -> _Shape:
        shape = self._shapes.get(nulls)
        if shape is None:
            kept = [k for k in self._keys if k not in nulls]
            shape = self._shapes[nulls] = _Shape(self._table, self._dialect, kept)
        return shape


class _Fast:
    """The statements of every request (reserve, settle), prepared (see :class:`_Prepared`)."""

    def __init__(self, sql: _Statements, dialect: Any) -> None:
        r = reservations.c

        def prepared(
            stmt: Any, keys: Sequence[str] | None = None, around: str | None = None
        ) -> _Prepared:
            return _Prepared(stmt, dialect, keys, around)

        self.hold = _Sure(sql.hold, dialect)
        self.lease = prepared(sql.lease)
        self.take_reservation = prepared(
            delete(reservations).where(r.id == bindparam("id")).returning(r.amount_nusd, r.targets),
        )
        # the same release, of a reservation as it was held (known to the caller)
        self.release_held = _Sure(
            delete(reservations)
            .where(
                r.id == bindparam("id"),
                r.amount_nusd == bindparam("amount"),
                r.targets == bindparam("targets"),
            )
            .returning(r.id),
            dialect,
        )
        self.add_reservations = _InsertMany(reservations, dialect, RESERVATION_COLUMNS)
        self.add_usage = _InsertMany(usage, dialect, [c.name for c in usage.c if c.name != "id"])
        move = sql.move.returning(spend.c.spent_nusd)
        move_keys = ["scope", "period", "spent_nusd", "reserved_nusd"]
        self.move = prepared(move, move_keys)
        self.fire_alert = prepared(sql.fire_alert.returning(alerts.c.percent))
        self.move_alerting: _Prepared | None = None
        if dialect.name == "postgresql":
            # a move and the alerts it crosses, in one statement: in the pipeline what fired
            # comes back with the commit, and a settle that alerts watch needs no answer
            # before it
            around = _MOVE_ALERTING.replace("{alerts}", alerts.name)
            self.move_alerting = prepared(move, move_keys, around)
        self.mark_journal = prepared(sql.mark_journal, ["owner", "seq"])
        self.add_response = _InsertMany(responses, dialect, RESPONSE_COLUMNS)
        self.read_slice = prepared(select(r.amount_nusd, r.targets).where(r.id == bindparam("id")))
        self.draw_slice = prepared(
            update(reservations)
            .where(r.id == bindparam("id"))
            .values(amount_nusd=r.amount_nusd - bindparam("n")),
        )


def _wal(cur: sqlite3.Cursor, patience_s: float = 30.0) -> None:
    """Switch to WAL. Openers of a new file race for it, and SQLite answers the loser
    SQLITE_BUSY at once, without its busy handler: so wait and try again."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class Store:
    """SQL operations. Not thread-safe: one thread (the ledger's) uses it."""

    def __init__(self, url: str, owner: str | None = None) -> None:
        self.owner = owner or uuid.uuid4().hex
        """This process's ledger: the owner its reservations and lease name."""
        self.leased_until: float | None = None
        """When this owner's lease lapses unless renewed; ``None``: it has none (holds nothing)."""
        self.doubtful: list[str] = []
        """Reservations that may have been committed as the connection was lost."""
        self.retry_s = 1.0
        """A database server that refused a connection is not tried again before this."""
        self._retry_at = 0.0
        parsed = database_url(url)
        self.dialect = parsed.get_backend_name()
        self._begin: Literal["IMMEDIATE", "DEFERRED"] = "IMMEDIATE"
        # The dialects differ here only: how a transaction starts and how a connection is kept.
        if self.dialect == "sqlite":
            # One connection for the life of the thread; NullPool so nothing else holds one.
            engine = create_engine(parsed, poolclass=NullPool)
            event.listen(engine, "connect", self._on_connect)
            event.listen(engine, "begin", self._on_begin)
        else:
            # The ledger's thread is the only user: a pool of exactly one connection per
            # process (a replica never holds more), replaced after the server dropped it.
            # A server that does not answer (a host gone, not refusing) fails the connect in
            # seconds rather than the OS's minutes, and so does a connection whose sent data
            # goes unacknowledged: either would stall every caller.
            timeouts = {"connect_timeout": 5, "tcp_user_timeout": 10_000}
            connect_args: dict[str, Any] = {
                k: v for k, v in timeouts.items() if k not in parsed.query
            }
            # psycopg prepares no statement of its own here: once it has one, its rollback
            # of a transaction deallocates every statement on the connection, the
            # pipeline's too (``_pgpipe.py``)
            connect_args["prepare_threshold"] = None
            engine = create_engine(
                parsed,
                pool_size=1,
                max_overflow=0,
                pool_timeout=5,
                pool_pre_ping=True,
                connect_args=connect_args,
            )
            event.listen(engine, "do_connect", self._connect)
        self.engine = engine
        # libpq's pipeline mode needs libpq 14 or later (psycopg's binary wheels bundle one)
        self.pipelines = (
            self.dialect == "postgresql" and engine.dialect.loaded_dbapi.Pipeline.is_supported()
        )
        """Whether :meth:`driver_write` sends a transaction's statements as one pipeline."""
        self.sql = _Statements(self.insert)
        self.fast = _Fast(self.sql, engine.dialect)
        self._statements: Any = None  # _pgpipe.Statements: those prepared on the connection
        self._begin_write = "IMMEDIATE"
        try:
            self.conn = engine.connect()
            with self.write():
                if self.dialect == "postgresql":  # one migrator at a time, across hosts
                    self.conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                self.applied = migrate(self.conn)
        except SQLAlchemyError as exc:
            shown = parsed.render_as_string(hide_password=True)
            error = LedgerUnavailableError if unreachable(exc) else LedgerError
            raise error(
                f"cannot open the ledger at {shown}: {exc.__class__.__name__}: {exc}"
            ) from None

    def _connect(self, dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        """Connect to a server, but not again within ``retry_s`` of a failed try: while it
        is down, each caller fails at once instead of waiting out a connect timeout."""
        error = dialect.loaded_dbapi.OperationalError
        if time.monotonic() < self._retry_at:
            raise error(f"the database server refused a connection less than {self.retry_s:g}s ago")
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.Error:
            self._retry_at = time.monotonic() + self.retry_s
            raise

    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL waits on other openers
        _wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    def _on_begin(self, conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {self._begin}")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: the database's write lock from the first statement."""
        self._begin = "IMMEDIATE"
        with self.conn.begin():
            yield self.conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        self._begin = "DEFERRED"
        try:
            with self.conn.begin():
                yield self.conn
        finally:
            self._begin = "IMMEDIATE"

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()

    # -- budgets -------------------------------------------------------------

    def budget_rows(self) -> dict[str, BudgetLimits]:
        """Budgets set with ``polyroute budget set`` (they override the config's)."""
        with self.read() as c:
            rows = c.execute(select(budgets)).all()
        return {
            r.scope: BudgetLimits(r.daily_usd, r.monthly_usd, tuple(json.loads(r.alert_percents)))
            for r in rows
        }

    def set_budget(self, scope: str, limits: BudgetLimits, now: float) -> None:
        with self.write() as c:
            self._put_budget(c, scope, limits, now)

    def set_budgets(
        self,
        limits: Mapping[str, BudgetLimits],
        now: float,
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        """Several scopes' limits, and ``also``'s writes, in one transaction: all or none."""
        with self.write() as c:
            if also is not None:
                also(c)
            for scope, lim in limits.items():
                self._put_budget(c, scope, lim, now)

    def _put_budget(self, c: Connection, scope: str, limits: BudgetLimits, now: float) -> None:
        values = {
            "scope": scope,
            "daily_usd": limits.daily_usd,
            "monthly_usd": limits.monthly_usd,
            "alert_percents": json.dumps(list(limits.alert_percents)),
            "updated_at": now,
        }
        stmt = self.insert(budgets).values(values)
        c.execute(stmt.on_conflict_do_update(index_elements=["scope"], set_=values))

    # -- virtual keys ------------------------------------------------------------

    def create_key(
        self,
        *,
        name: str,
        secret_hash: str,
        prefix: str,
        models: tuple[str, ...],
        limits: BudgetLimits | None,
        now: float,
        new_id: Callable[[], str],
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> VirtualKey:
        """Insert a key and its budget (scope ``key:<id>``) in one transaction."""
        with self.write() as c:
            key_id = new_id()
            # ids have 40 random bits: a clash is rare, not impossible; the write lock makes
            # this check and the insert below one step
            while c.execute(select(virtual_keys.c.id).where(virtual_keys.c.id == key_id)).first():
                key_id = new_id()
            c.execute(
                virtual_keys.insert().values(
                    id=key_id,
                    name=name,
                    secret_hash=secret_hash,
                    prefix=prefix,
                    models=json.dumps(list(models)),
                    created_at=now,
                    revoked_at=None,
                    rpm=rpm,
                    tpm=tpm,
                )
            )
            if limits is not None:
                self._put_budget(c, key_scope(key_id), limits, now)
        daily, monthly = (None, None) if limits is None else (limits.daily_usd, limits.monthly_usd)
        return VirtualKey(key_id, name, prefix, models, utc(now), None, daily, monthly, rpm, tpm)

    def keys(self, include_revoked: bool) -> list[VirtualKey]:
        q = self.sql.keys.order_by(virtual_keys.c.created_at, virtual_keys.c.id)
        if not include_revoked:
            q = q.where(virtual_keys.c.revoked_at.is_(None))
        with self.read() as c:
            return [_virtual_key(r) for r in c.execute(q)]

    def revoke_key(self, key_id: str, now: float) -> VirtualKey:
        """Revoke ``key_id``; a revoked key keeps its first ``revoked_at``."""
        vk = virtual_keys.c
        with self.write() as c:
            c.execute(
                update(virtual_keys)
                .where(vk.id == key_id, vk.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = c.execute(self.sql.keys.where(vk.id == key_id)).first()
        if row is None:
            raise UnknownKeyError(key_id)
        return _virtual_key(row)

    def key(self, key_id: str) -> VirtualKey | None:
        """The key with this id (revoked or not), if any."""
        with self.read() as c:
            row = c.execute(self.sql.keys.where(virtual_keys.c.id == key_id)).first()
        return None if row is None else _virtual_key(row)

    def verify_key(self, secret_hash: str) -> VirtualKey | None:
        """The active key with this hash, if any."""
        with self.read() as c:
            row = c.execute(self.sql.active_key_by_hash, {"b_hash": secret_hash}).first()
        return None if row is None else _virtual_key(row)

    def reserve(
        self,
        limits: Mapping[str, BudgetLimits],
        amount_usd: float | None,
        ts: float,
        ttl_s: float,
        model: str,
        lease_s: float = 10.0,
    ) -> Reservation:
        """Hold ``amount_usd`` against every limited (scope, period), or raise :class:`BudgetExceeded`.

        The hold names this store's owner; its lease is taken (or renewed if half of it
        is gone) in the same transaction, so no hold exists without a live lease."""
        checks = _checks(limits)
        rid = uuid.uuid4().hex
        if not checks:
            return Reservation(rid, amount_usd or 0.0, ())
        if amount_usd is None:
            raise self._refusal(checks[0], ts, None, model)
        amount = to_nusd(amount_usd, up=True)
        limits_nusd = [to_nusd(limit) for _, _, limit in checks]
        targets = [(scope, period_key(kind, ts)) for scope, kind, _ in checks]
        # a check the amount alone exceeds is refused unasked; the holds before it are
        # made, and rolled back, as one check at a time would
        over = next((i for i, n in enumerate(limits_nusd) if amount > n), len(checks))
        renew = over == len(checks) and (
            self.leased_until is None or self.leased_until - ts < lease_s / 2
        )
        fast = self.fast
        self.release_doubtful()
        try:
            with self._doubt(rid), self.driver_write() as cur:
                # the holds, the lease and the reservation go out together with the commit
                holds = [
                    fast.hold.make(cur, _hold(s, p, amount, n), _NoRoom(i))
                    for i, ((s, p), n) in enumerate(
                        zip(targets[:over], limits_nusd[:over], strict=True)
                    )
                ]
                if over < len(checks):
                    _refused_at(over, holds)
                if renew:
                    fast.lease.run(cur, {"b_owner": self.owner, "b_until": ts + lease_s})
                row = self._reservation_row(rid, ts, ttl_s, amount, targets)
                fast.add_reservations.many(cur, [row])
        except _NoRoom as refused:  # rolled back: nothing is held
            raise self._refusal(checks[refused.index], ts, amount_usd, model) from None
        if renew:
            self.leased_until = ts + lease_s
        return Reservation(rid, amount_usd, tuple(targets))

    def _refusal(
        self,
        check: tuple[str, PeriodKind, float],
        ts: float,
        requested_usd: float | None,
        model: str,
    ) -> BudgetExceeded:
        """The refusal by ``check`` (scope, period kind, limit), with what its period has
        spent and holds now."""
        scope, kind, limit = check
        status = self._period(scope, kind, limit, ts)
        return BudgetExceeded(
            scope=scope,
            period=kind,
            limit_usd=limit,
            spent_usd=status.spent_usd,
            reserved_usd=status.reserved_usd,
            requested_usd=requested_usd,
            model=model,
        )

    def reserve_group(
        self, requests: Sequence[GroupedReservation], ttl_s: float, lease_s: float
    ) -> list[Reservation] | None:
        """Several reservations in one transaction, each held as :meth:`reserve` would hold
        it, after the ones before it: all of them, or (``None``) none, when one would be
        refused; :meth:`reserve` them one by one then, which says which and why.

        Reservations that queued behind one transaction go to the database together: its
        round trips and its commit are paid once for the group."""
        planned = []
        totals: dict[tuple[str, str], list[int]] = {}  # (scope, period): [amount, limit]
        for limits, amount_usd, ts in requests:
            amount = to_nusd(amount_usd, up=True)
            targets = []
            for scope, kind, limit in _checks(limits):
                n = to_nusd(limit)
                if amount > n:
                    return None  # refused unasked
                target = (scope, period_key(kind, ts))
                total = totals.setdefault(target, [0, n])
                total[0] += amount
                total[1] = min(total[1], n)
                targets.append(target)
            planned.append((uuid.uuid4().hex, amount_usd, amount, ts, targets))
        if any(n > limit for n, limit in totals.values()):
            return None  # more than a limit together: a hold on a new row would not check it
        last = max(ts for _, _, ts in requests)
        renew = self.leased_until is None or self.leased_until - last < lease_s / 2
        fast = self.fast
        self.release_doubtful()
        try:
            with self._doubt(*(p[0] for p in planned)), self.driver_write() as cur:
                # one hold per (scope, period) for the whole group: it fits exactly when
                # each of the group's would, one after the other (amounts are positive);
                # in the order a reservation locks rows, so that replicas cannot deadlock
                for (s, p), (n, lim) in sorted(totals.items(), key=_lock_order):
                    fast.hold.make(cur, _hold(s, p, n, lim), _NoRoom())
                if renew and totals:
                    fast.lease.run(cur, {"b_owner": self.owner, "b_until": last + lease_s})
                rows = [
                    self._reservation_row(rid, ts, ttl_s, n, targets)
                    for rid, _, n, ts, targets in planned
                    if targets
                ]
                if rows:
                    fast.add_reservations.many(cur, rows)
        except _NoRoom:  # a hold refused (raised by its hold, or by the commit)
            return None
        if renew and totals:
            self.leased_until = last + lease_s
        return [
            Reservation(rid, amount_usd, tuple(targets))
            for rid, amount_usd, _, _, targets in planned
        ]

    def lease_slice(
        self,
        limits: Mapping[str, BudgetLimits],
        ts: float,
        *,
        min_nusd: int,
        max_nusd: int,
        share: int,
        ttl_s: float,
        lease_s: float,
        grow: str | None = None,
    ) -> tuple[str, int] | None:
        """Lease a slice of the headroom of every limited (scope, period) (see ``_slices.py``):
        ``headroom / (share x live leases)``, at most ``max_nusd``; ``(id, amount)``, or
        ``None`` when that is under ``min_nusd`` (or the slice ``grow`` to top up is gone).

        One transaction: the same conditional holds as :meth:`reserve`, so slices and
        reservations of every process together stay within each limit."""
        checks = [
            (scope, period_key(kind, ts), to_nusd(limit)) for scope, kind, limit in _checks(limits)
        ]
        if not checks:
            return None
        rid = grow or SLICE_PREFIX + uuid.uuid4().hex
        self.release_doubtful()
        try:
            with self._doubt(rid), self.write() as c:
                live = c.scalar(
                    select(func.count())
                    .select_from(leases)
                    .where(leases.c.expires_at >= ts, leases.c.owner != self.owner)
                )
                headroom = max_nusd * share * (int(live or 0) + 1)
                for scope, period, limit in checks:
                    row = c.execute(
                        self.sql.read_spend, {"b_scope": scope, "b_period": period}
                    ).first()
                    spent, held = (row.spent_nusd, row.reserved_nusd) if row else (0, 0)
                    headroom = min(headroom, limit - spent - held)
                size = min(max_nusd, headroom // (share * (int(live or 0) + 1)))
                if size < min_nusd:
                    return None
                self._hold_slice(c, checks, rid, size, ts, ttl_s, grow is not None)
                if self.leased_until is None or self.leased_until - ts < lease_s / 2:
                    self._renew(c, ts, lease_s)
        except _NoRoom:
            return None
        return rid, size

    def _hold_slice(
        self,
        c: Connection,
        checks: list[tuple[str, str, int]],
        rid: str,
        size: int,
        ts: float,
        ttl_s: float,
        grow: bool,
    ) -> None:
        """Hold ``size`` more against every check for slice ``rid`` (new, or ``grow``n);
        raises :class:`_NoRoom` (the caller's transaction then rolls back)."""
        for scope, period, limit in checks:
            params = _hold(scope, period, size, limit)
            if c.execute(self.sql.hold, params).first() is None:
                raise _NoRoom  # another host took it since the read
        r = reservations.c
        if grow:
            more = (
                update(reservations)
                .where(r.id == rid, r.owner == self.owner)
                .values(amount_nusd=r.amount_nusd + size, expires=ts + ttl_s)
            )
            if c.execute(more).rowcount != 1:  # released (swept) meanwhile
                raise _NoRoom
            return
        targets = [(s, p) for s, p, _ in checks]
        c.execute(self.sql.add_reservation, self._reservation_row(rid, ts, ttl_s, size, targets))

    def _reservation_row(
        self, rid: str, ts: float, ttl_s: float, amount_nusd: int, targets: list[tuple[str, str]]
    ) -> dict[str, Any]:
        """A reservation of this owner's holding ``amount_nusd`` against each of ``targets``."""
        return {
            "id": rid,
            "created": ts,
            "expires": ts + ttl_s,
            "amount_nusd": amount_nusd,
            "targets": json.dumps(targets),
            "owner": self.owner,
        }

    def release_slices(self, owner: str) -> int:
        """Release the slices of ``owner``, a process known to be dead (its journal's lock is
        free): what its journal held is written back, the rest need not wait for its lease."""
        r = reservations.c
        return self._release(and_(r.owner == owner, r.id.startswith(SLICE_PREFIX)))

    def shrink_slice(self, rid: str, nusd: int) -> None:
        """Hand back ``nusd`` of slice ``rid`` (what none of its requests holds)."""
        r = reservations.c
        with self.write() as c:
            row = c.execute(select(r.amount_nusd, r.targets).where(r.id == rid)).first()
            if row is None:
                return
            back = min(row.amount_nusd, nusd)
            c.execute(
                update(reservations).where(r.id == rid).values(amount_nusd=r.amount_nusd - back)
            )
            self._apply(c, {(s, p): [0, back] for s, p in json.loads(row.targets)})

    @contextmanager
    def _doubt(self, *rids: str) -> Iterator[None]:
        """A connection lost during a reservation's transaction (its commit above all)
        leaves it unknown whether the holds were made: release them once the database
        answers."""
        try:
            yield
        except SQLAlchemyError as exc:
            if unreachable(exc):
                self.doubtful.extend(rids)
            raise

    def release_doubtful(self) -> None:
        """Release the reservations :meth:`_doubt` kept (none there: nothing happens)."""
        if self.doubtful:
            self.release(self.doubtful)
            self.doubtful = []

    def settle(
        self,
        batch: Sequence[SettleItem],
        limits: Mapping[str, BudgetLimits],
        now: float,
        mark: tuple[str, int] | None = None,
    ) -> list[FiredAlert]:
        """Write usage rows, turn reservations into actual spend; return alerts newly fired.

        A reservation already swept as expired is not released twice. ``mark``: the batch
        ends at this (owner, seq) of a journal, stored in the same transaction. The hot
        path of every record, so it runs prepared statements (see :class:`_Prepared`).
        """
        spent: defaultdict[tuple[str, str], int] = defaultdict(int)  # nano-USD per target
        rows = []
        # the (scope, period) rows a record moves, by its day, provider and key: a batch
        # has a few of each, and working them out per record was a quarter of its settle
        targets_of: dict[tuple[str, str, str | None], list[tuple[str, str]]] = {}
        for rec, _ in batch:
            cost = None if rec.cost_usd is None else to_nusd(rec.cost_usd)
            day = day_of(rec.ts)
            rows.append(_usage_row(rec, cost, day))
            which = (day, rec.provider, rec.virtual_key)
            targets = targets_of.get(which)
            if targets is None:
                periods = [period_key(kind, rec.ts) for kind in KINDS]
                targets = targets_of[which] = [(s, p) for s in rec.scopes() for p in periods]
            for target in targets:
                spent[target] += cost or 0
        held: list[Reservation] = []
        draws: defaultdict[str, int] = defaultdict(int)  # slice id -> nano-USD its records spent
        for rec, r in batch:
            if r is None or not r.targets:
                continue
            if is_slice(r.id):
                draws[r.id] += 0 if rec.cost_usd is None else max(0, to_nusd(rec.cost_usd))
            else:
                held.append(r)
        settle = partial(self._settle, rows, spent, held, draws, limits, now, mark)
        if self.pipelines and held:
            try:
                return settle(as_held=True)
            except _NotAsHeld:
                pass  # a sweep released one meanwhile: settled by what the database holds
        return settle(as_held=False)

    def _settle(
        self,
        rows: list[dict[str, Any]],
        spent: Mapping[tuple[str, str], int],
        held: Sequence[Reservation],
        draws: Mapping[str, int],
        limits: Mapping[str, BudgetLimits],
        now: float,
        mark: tuple[str, int] | None,
        *,
        as_held: bool,
    ) -> list[FiredAlert]:
        """:meth:`settle`'s transaction; ``spent``: nano-USD its records spent per (scope,
        period).

        ``as_held``: each reservation is released as it was held (its amount and targets,
        known here), and the transaction fails with :class:`_NotAsHeld` if one no longer
        is; in PostgreSQL's pipeline its moves then need not wait for what each release
        took back. Else each release's rows are read, and one a sweep released already
        moves nothing."""
        # (scope, period) -> [spent, released from reservations], in nano-USD
        deltas: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for target, n in spent.items():
            deltas[target][0] = n
        fast = self.fast
        fired: list[FiredAlert] = []
        with self.driver_write() as cur:
            if rows:  # first: nothing below depends on them
                fast.add_usage.many(cur, rows)
            if mark is not None:
                fast.mark_journal.run(cur, {"owner": mark[0], "seq": mark[1]})
            if as_held:
                for r in held:
                    amount = to_nusd(r.amount_usd, up=True)  # as reserve() held it
                    release = {"id": r.id, "amount": amount, "targets": json.dumps(r.targets)}
                    fast.release_held.make(cur, release, _NotAsHeld())
                    for target in r.targets:
                        deltas[target][1] += amount
            else:
                taken = [fast.take_reservation.sent(cur, {"id": r.id}) for r in held]
                for took in taken:  # none if a sweep released it: then nothing to move
                    for amount, targets in took():
                        for scope, period in json.loads(targets):
                            deltas[(scope, period)][1] += amount
            for sid, cost in draws.items():  # a slice released already: its hold is gone
                for amount, targets in fast.read_slice.rows(cur, {"id": sid}):
                    moved = min(amount, cost)
                    fast.draw_slice.run(cur, {"id": sid, "n": moved})
                    for scope, period in json.loads(targets):
                        deltas[(scope, period)][1] += moved
            # a move that may cross an alert's threshold fires its alerts itself on
            # PostgreSQL (what fired is read after the commit), else its new spend is read
            # back; the other moves go out with the commit
            watched = []
            alerting = []
            for (scope, period), (ds, dr) in sorted(deltas.items(), key=_lock_order):
                row = {"scope": scope, "period": period, "spent_nusd": ds, "reserved_nusd": -dr}
                lim = limits.get(scope)
                kind: PeriodKind = "daily" if period.startswith("day:") else "monthly"
                limit = None if lim is None or ds <= 0 else lim.for_period(kind)
                if lim is None or not limit or not lim.alert_percents:  # 0: nothing to alert
                    fast.move.run(cur, row)
                elif fast.move_alerting is not None:
                    pcts = lim.alert_percents
                    floors = ",".join(str(_alert_floor(limit, pct)) for pct in pcts)
                    alert = {"b_scope": scope, "b_period": period, "b_at": now}
                    alert["b_pcts"] = "{" + ",".join(repr(float(pct)) for pct in pcts) + "}"
                    alert["b_floors"] = "{" + floors + "}"
                    fires = fast.move_alerting.sent(cur, {**row, **alert})
                    alerting.append((scope, period, kind, limit, pcts, fires))
                else:
                    watched.append((scope, period, kind, limit, lim, fast.move.sent(cur, row)))
            for scope, period, kind, limit, lim, move in watched:
                ((spent_now,),) = move()
                for pct in lim.alert_percents:
                    if spent_now >= _alert_floor(limit, pct):
                        params = {"b_scope": scope, "b_period": period, "b_pct": pct, "b_at": now}
                        if fast.fire_alert.rows(cur, params):  # a row: fired just now
                            fired.append(
                                FiredAlert(scope, kind, period, pct, to_usd(spent_now), limit)
                            )
        for scope, period, kind, limit, pcts, fires in alerting:  # committed: read, no wait
            by_value = {float(pct): pct for pct in pcts}  # the configured number, as it was
            for pct, spent_now in sorted(fires(), key=lambda r: pcts.index(by_value[r[0]])):
                fired.append(
                    FiredAlert(scope, kind, period, by_value[pct], to_usd(spent_now), limit)
                )
        return fired

    @contextmanager
    def driver_write(self) -> Iterator[Any]:
        """A write transaction on the driver, for :class:`_Prepared` statements.

        On PostgreSQL (libpq 14 or later) the transaction is one libpq pipeline
        (:class:`~._pgpipe.Pipe`): statements are queued, and go out, and the server is
        waited for, only when a result is read (:meth:`_Prepared.sent`,
        :meth:`_Prepared.rows`) and at the commit, where each statement used to cost a
        round trip. So queue what does not depend on a result before reading it.
        Elsewhere it is the driver's own cursor. Driver errors come out as SQLAlchemy's."""
        if self.conn.in_transaction():  # never nest in (or under) a SQLAlchemy transaction
            raise LedgerError("the ledger's connection is already in a transaction")
        dbapi = self.conn.connection.dbapi_connection
        assert dbapi is not None
        error = self.engine.dialect.loaded_dbapi.Error
        try:
            if self.pipelines:
                yield from self._piped(dbapi)
                return
            cur = dbapi.cursor()
            try:
                if self.dialect == "sqlite":
                    cur.execute(f"BEGIN {self._begin_write}")
                    try:
                        yield cur
                    except BaseException:
                        cur.execute("ROLLBACK")
                        raise
                    cur.execute("COMMIT")
                else:  # psycopg begins by itself, and each statement is a round trip
                    try:
                        yield cur
                    except BaseException:
                        dbapi.rollback()
                        raise
                    dbapi.commit()
            finally:
                cur.close()
        except error as exc:
            wrapped = DBAPIError.instance(None, None, exc, error)
            if self.dialect != "sqlite" and dbapi.closed:  # gone: reconnect on next use
                self.conn.invalidate(exc)
            raise wrapped from exc

    def _piped(self, dbapi: Any) -> Iterator[Any]:
        """:meth:`driver_write` on psycopg, below it on libpq (see ``_pgpipe.py``)."""
        from ._pgpipe import Pipe, Statements  # psycopg: the postgres extra

        statements = self._statements
        if statements is None or statements.pgconn is not dbapi.pgconn:  # a new connection
            statements = self._statements = Statements(dbapi.pgconn)
        pipe = Pipe(statements)
        try:
            yield pipe
            pipe.commit()
        except BaseException:
            pipe.abandon()
            if not dbapi.closed:
                dbapi.rollback()  # a ROLLBACK if a failed transaction is still open
            raise

    def journal_mark(self, owner: str) -> int:
        """How far into ``owner``'s journal the database has written (0: nothing)."""
        with self.read() as c:
            seq = c.scalar(select(journal_marks.c.seq).where(journal_marks.c.owner == owner))
        return int(seq or 0)

    def drop_journal_mark(self, owner: str) -> None:
        """``owner``'s journal is gone: forget its mark."""
        with self.write() as c:
            c.execute(delete(journal_marks).where(journal_marks.c.owner == owner))

    def renew(self, now: float, lease_s: float) -> None:
        """Extend this owner's lease, if it has one, to ``now + lease_s``."""
        if self.leased_until is not None:
            with self.write() as c:
                self._renew(c, now, lease_s)

    def _renew(self, c: Connection, now: float, lease_s: float) -> None:
        # an upsert: a lease another process swept while this one stalled is taken again
        # (the holds it released stay released; settling them later finds them gone)
        c.execute(self.sql.lease, {"b_owner": self.owner, "b_until": now + lease_s})
        self.leased_until = now + lease_s

    def drop_lease(self) -> None:
        """At a clean stop: holds still in flight are released by the next sweep, rather
        than when the lease would lapse."""
        if self.leased_until is not None:
            with self.write() as c:
                c.execute(delete(leases).where(leases.c.owner == self.owner))
            self.leased_until = None

    def _stale(self, now: float) -> ColumnElement[bool]:
        r = reservations.c
        live = exists().where(leases.c.owner == r.owner, leases.c.expires_at >= now)
        # never this process's own: it is alive whatever its lease row says (a renewal that
        # failed or came late), and its requests still settle what they hold
        abandoned = and_(r.owner.is_not(None), r.owner != self.owner, ~live)
        return or_(r.expires < now, abandoned)

    def has_stale(self, now: float) -> bool:
        """Whether :meth:`sweep` would release anything (a read: no write lock taken)."""
        with self.read() as c:
            return bool(c.scalar(select(exists().where(self._stale(now)))))

    def sweep(self, now: float) -> int:
        """Release reservations whose holder cannot settle them any more: its lease has
        lapsed (a killed process; never this one), or the reservation is past its own
        expiry."""
        released = self._release(self._stale(now))
        with self.write() as c:
            c.execute(delete(leases).where(leases.c.expires_at < now, leases.c.owner != self.owner))
        return released

    def release(self, ids: Sequence[str]) -> int:
        """Release these reservations without spend (their request never went out)."""
        return self._release(reservations.c.id.in_(ids))

    def _release(self, which: Any) -> int:
        deltas: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        r = reservations.c
        with self.write() as c:
            # deleted and read in one statement: of two sweeps racing (across hosts, under
            # PostgreSQL's read committed) only one gets a hold's rows, so none is released twice
            stale = c.execute(
                delete(reservations).where(which).returning(r.amount_nusd, r.targets)
            ).all()
            for amount, targets in stale:
                for scope, period in json.loads(targets):
                    deltas[(scope, period)][1] += amount
            self._apply(c, deltas)
        return len(stale)

    def _apply(self, c: Connection, deltas: Mapping[tuple[str, str], list[int]]) -> None:
        if not deltas:
            return
        c.execute(
            self.sql.move,
            [
                {"scope": s, "period": p, "spent_nusd": ds, "reserved_nusd": -dr}
                for (s, p), (ds, dr) in sorted(deltas.items(), key=_lock_order)
            ],
        )

    # -- reading ---------------------------------------------------------------

    def _period(self, scope: str, kind: PeriodKind, limit: float | None, ts: float) -> PeriodStatus:
        period = period_key(kind, ts)
        with self.read() as c:
            row = c.execute(
                select(spend.c.spent_nusd, spend.c.reserved_nusd).where(
                    spend.c.scope == scope, spend.c.period == period
                )
            ).first()
        spent, reserved = (row.spent_nusd, row.reserved_nusd) if row else (0, 0)
        return PeriodStatus(kind, period, limit, to_usd(spent), to_usd(reserved))

    def budget_status(
        self, scopes: Mapping[str, tuple[BudgetLimits, Literal["config", "cli", "none"]]], ts: float
    ) -> list[BudgetStatus]:
        return [
            BudgetStatus(
                scope,
                source,
                lim,
                self._period(scope, "daily", lim.daily_usd, ts),
                self._period(scope, "monthly", lim.monthly_usd, ts),
            )
            for scope, (lim, source) in scopes.items()
        ]

    def usage_report(
        self, by: GroupBy, provider: str | None, since_ts: float | None
    ) -> UsageReport:
        key = {
            "day": usage.c.day,
            "month": usage.c.month,
            "provider": usage.c.provider,
            "model": usage.c.model,
        }[by]
        # summed as floats: exact up to $9 million, and no integer overflow past it
        cost = func.coalesce(func.sum(cast(usage.c.cost_nusd, Float)), 0)
        q = select(
            key.label("key"),
            func.count().label("requests"),
            func.coalesce(func.sum(case((usage.c.status != "ok", 1), else_=0)), 0).label("failed"),
            func.coalesce(func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(usage.c.cached_tokens), 0).label("cached_tokens"),
            func.coalesce(func.sum(usage.c.cache_write_tokens), 0).label("cache_write_tokens"),
            func.coalesce(func.sum(usage.c.reasoning_tokens), 0).label("reasoning_tokens"),
            cost.label("cost"),
            func.coalesce(func.sum(usage.c.carbon_g), 0.0).label("carbon_g"),
            func.coalesce(
                func.sum(
                    case(
                        (
                            usage.c.carbon_g.is_not(None),
                            usage.c.prompt_tokens + usage.c.completion_tokens,
                        ),
                        else_=0,
                    )
                ),
                0,
            ).label("carbon_tokens"),
        ).group_by(key)
        if provider is not None:
            q = q.where(usage.c.provider == provider)
        if since_ts is not None:
            q = q.where(usage.c.day >= day_of(since_ts))
        q = q.order_by(key) if by in ("day", "month") else q.order_by(cost.desc(), key)
        with self.read() as c:
            rows = c.execute(q).all()
        return UsageReport(
            by,
            tuple(
                UsageRow(
                    r.key,
                    r.requests,
                    r.failed,
                    r.prompt_tokens,
                    r.completion_tokens,
                    to_usd(r.cost),
                    r.cached_tokens,
                    r.cache_write_tokens,
                    r.reasoning_tokens,
                    float(r.carbon_g),
                    int(r.carbon_tokens),
                )
                for r in rows
            ),
        )

    def explain(self, sql: str) -> list[str]:
        """SQLite's query plan for ``sql`` (tests check the usage queries use an index)."""
        with self.read() as c:
            return [str(r[-1]) for r in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]

    def count(self) -> int:
        with self.read() as c:
            return int(c.execute(select(func.count()).select_from(usage)).scalar_one())

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        return (postgresql if self.dialect == "postgresql" else sqlite).insert(table)


def _checks(limits: Mapping[str, BudgetLimits]) -> list[tuple[str, PeriodKind, float]]:
    """(scope, period kind, limit in USD) of every limit in ``limits``."""
    return [
        (scope, kind, limit)
        for scope, lim in limits.items()
        for kind in KINDS
        if (limit := lim.for_period(kind)) is not None
    ]


def _alert_floor(limit_usd: float, percent: float) -> int:
    """The spend, in nano-USD, at which an alert at ``percent`` of ``limit_usd`` fires."""
    return to_nusd(limit_usd * percent / 100)


def _hold(scope: str, period: str, amount_nusd: int, limit_nusd: int) -> dict[str, Any]:
    """The parameters of the conditional hold (``_Statements.hold``)."""
    return {"b_scope": scope, "b_period": period, "b_amount": amount_nusd, "b_limit": limit_nusd}


def _refused_at(index: int, holds: Sequence[Callable[[], object]]) -> NoReturn:
    """Leave a reservation's transaction refused by its check ``index``, or by one of
    ``holds`` (the checks before it, made first), whose refusal is raised as it is read."""
    for answer in holds:
        answer()
    raise _NoRoom(index)


class _NotAsHeld(Exception):
    """Inside a settle's transaction: a reservation is no longer as it was held (a sweep
    released it): leave the transaction, rolled back, and settle by reading instead."""


class _NoRoom(Exception):
    """Inside a reservation's, a group's or a slice's transaction: leave it, rolled back.
    ``index``: the check that refused (a reservation's, to name its budget)."""

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        self.index = index


_MIGRATION_LOCK = 0x706F6C79  # "poly": PostgreSQL's advisory lock key for migrating
_SCOPE_RANK = {"global": 0, "provider": 1, "key": 2}


def _lock_order(item: tuple[tuple[str, str], Any]) -> tuple[int, str, str]:
    """Spend rows in the order a reservation locks them (global, provider, key; daily before
    monthly), so a settle and a reservation on PostgreSQL never wait on each other's rows."""
    (scope, period), _ = item
    return _SCOPE_RANK.get(scope.split(":", 1)[0], 3), scope, period


def database_url(url: str) -> URL:
    """``[storage] url`` parsed; ``postgresql://`` is driven by psycopg 3. Raises
    :class:`LedgerError` for what is not a URL or names another database or driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise LedgerError(f"storage.url {url!r} is not a database URL: {exc}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and "+" not in parsed.drivername:
        return parsed.set(drivername="postgresql+psycopg")
    if (backend, driver) not in (("sqlite", "pysqlite"), ("postgresql", "psycopg")):
        raise LedgerError(
            f"storage.url: {parsed.drivername!r} is not supported; "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    return parsed


def unreachable(exc: SQLAlchemyError) -> bool:
    """The database cannot be reached (down, or the connection dropped), as opposed to a
    statement it refused."""
    return isinstance(exc, OperationalError | DisconnectionError | TimeoutError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _capped(total: Any, delta: Any) -> Any:
    """``total + delta``, but never past MAX_SUM_NUSD: an accumulated sum cannot overflow the
    64-bit column (the test is written so that it cannot overflow either)."""
    return case((total > MAX_SUM_NUSD - delta, MAX_SUM_NUSD), else_=total + delta)


def _virtual_key(row: Row[*tuple[Any, ...]]) -> VirtualKey:
    return VirtualKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        models=tuple(json.loads(row.models)),
        created_at=utc(row.created_at),
        revoked_at=None if row.revoked_at is None else utc(row.revoked_at),
        daily_usd=row.daily_usd,
        monthly_usd=row.monthly_usd,
        rpm=row.rpm,
        tpm=row.tpm,
    )


def _usage_row(rec: UsageRecord, cost: int | None, day: str) -> dict[str, Any]:
    return {
        "ts": rec.ts,
        "day": day,
        "month": day[:7],
        "provider": rec.provider,
        "model": rec.model,
        "virtual_key": rec.virtual_key,
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "cached_tokens": rec.cached_tokens,
        "cost_nusd": cost,
        "latency_ms": rec.latency_ms,
        "ttft_ms": rec.ttft_ms,
        "status": rec.status,
        "error_type": rec.error_type,
        "request_id": rec.request_id,
        "cache_write_tokens": rec.cache_write_tokens,
        "reasoning_tokens": rec.reasoning_tokens,
        "carbon_g": rec.carbon_g,
    }
