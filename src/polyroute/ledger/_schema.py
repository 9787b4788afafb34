"""Tables and named migrations. Imported only by the ledger's database thread.

The tables below are the current schema, used for queries only. A migration
is a name and a function of a connection that carries its own DDL, frozen as
it was written (its own copies of the tables it creates, or plain DDL
statements): later changes to the tables here never change what an old
migration builds. So a new column is a new migration, and the current tables
must equal what the migrations build (a test checks it).

Applied names are recorded in ``schema_migrations``; opening a ledger applies
the missing ones in order, inside one write transaction, so two processes
opening a new database at once cannot both migrate it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

metadata = MetaData()

migrations_table = Table(
    "schema_migrations",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", Float, nullable=False),
)

usage = Table(
    "usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("day", String(10), nullable=False),
    Column("month", String(7), nullable=False),
    Column("provider", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("virtual_key", String(100)),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("cost_nusd", BigInteger),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("status", String(16), nullable=False),
    Column("error_type", String(100)),
    Column("request_id", String(200)),
    # input tokens written to the prompt cache; output tokens spent reasoning (0 before 0006)
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),
    Column("reasoning_tokens", Integer, nullable=False, server_default="0"),
    # estimated gCO2e (polyroute.carbon); NULL: the model's size is unknown
    Column("carbon_g", Float),
)

budgets = Table(
    "budgets",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("daily_usd", Float),
    Column("monthly_usd", Float),
    Column("alert_percents", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

spend = Table(
    "budget_spend",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("spent_nusd", BigInteger, nullable=False),
    Column("reserved_nusd", BigInteger, nullable=False),
)

reservations = Table(
    "budget_reservations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("amount_nusd", BigInteger, nullable=False),
    Column("targets", Text, nullable=False),
    # the ledger (one per process) holding it; NULL: made before leases, released by `expires`
    Column("owner", String(40)),
)

# A process's claim to be alive: renewed every few seconds while it holds reservations.
# Reservations whose owner has no live lease are released by any process's sweep.
leases = Table(
    "ledger_leases",
    metadata,
    Column("owner", String(40), primary_key=True),
    Column("expires_at", Float, nullable=False),
)

journal_marks = Table(
    "ledger_journal",
    metadata,
    Column("owner", String(40), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
"""How far into each ledger's journal (see ``_journal.py``) the database has written."""

alerts = Table(
    "budget_alerts",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("percent", Float, primary_key=True),
    Column("fired_at", Float, nullable=False),
)

# Budget changes the optimizer applied (``polyroute budget optimize --apply`` or the gateway's
# auto-adjust): when, by whom (``cli`` | ``auto``), the total, and each provider's change (JSON).
budget_history = Table(
    "budget_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("source", String(16), nullable=False),
    Column("total_usd", Float, nullable=False),
    Column("method", Text, nullable=False),
    Column("allocations", Text, nullable=False),
)

# Gateway virtual keys. Only the secret's SHA-256 is kept (see ``ledger/_keys.py``); ``prefix``
# (its first 12 characters) lets a person tell keys apart. Budgets live in ``budgets`` under
# scope ``key:<id>``, so reservations charge them like any other scope.
virtual_keys = Table(
    "virtual_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("prefix", String(12), nullable=False),
    Column("models", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("rpm", Integer),  # rate limits (limits/): NULL, no limit
    Column("tpm", Integer),
)

# Stored Responses API answers (``POST /v1/responses`` with ``store``): the conversation up
# to the answer (input items, JSON) and the Response object as rendered (JSON). Only the
# virtual key that made one may read, continue or delete it (NULL: made without a key).
responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("virtual_key", String(100)),
    Column("created_at", Float, nullable=False),
    Column("model", String(200), nullable=False),
    Column("input", Text, nullable=False),
    Column("response", Text, nullable=False),
)

# `polyroute bench` runs (benchmark/_store.py): one row per run, one per sample it measured;
# a sample's key (run, provider, model, case, repeat) is what a resumed run skips.
bench_runs = Table(
    "bench_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("suites", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("runs", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("pairs", Text, nullable=False),
    Column("max_cost_usd", Float),
    Column("status", String(16), nullable=False),
)

bench_samples = Table(
    "bench_samples",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("provider", String(200), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("case_id", String(200), primary_key=True),
    Column("repeat", Integer, primary_key=True),
    Column("task_type", String(100), nullable=False),
    Column("ok", Integer, nullable=False),
    Column("error", Text),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_usd", Float),
    Column("carbon_g", Float),
    Column("retries", Integer, nullable=False),
    Column("score", Float),
    Column("passed", Integer),
)

# The current indexes, as the migrations create them (the schema test compares the two).
# `polyroute usage` answers by time, and by provider or model within time; every gateway
# request looks its key up by hash; sweeps find reservations by expiry and by owner.
INDEXES = (
    Index("ix_usage_day", usage.c.day),
    Index("ix_usage_month", usage.c.month),
    Index("ix_usage_provider_day", usage.c.provider, usage.c.day),
    Index("ix_usage_model_day", usage.c.model, usage.c.day),
    Index("ix_reservations_expires", reservations.c.expires),
    Index("ix_reservations_owner", reservations.c.owner),
    Index("ux_virtual_keys_secret_hash", virtual_keys.c.secret_hash, unique=True),
    Index("ix_budget_history_source_ts", budget_history.c.source, budget_history.c.ts),
)


# -- migrations: frozen DDL, never edited once released ---------------------------------


def _0001_initial(conn: Connection) -> None:
    md = MetaData()
    u = Table(
        "usage",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("ts", Float, nullable=False),
        Column("day", String(10), nullable=False),
        Column("month", String(7), nullable=False),
        Column("provider", String(200), nullable=False),
        Column("model", String(200), nullable=False),
        Column("virtual_key", String(100)),
        Column("prompt_tokens", Integer, nullable=False),
        Column("completion_tokens", Integer, nullable=False),
        Column("cached_tokens", Integer, nullable=False),
        Column("cost_nusd", BigInteger),
        Column("latency_ms", Float, nullable=False),
        Column("ttft_ms", Float),
        Column("status", String(16), nullable=False),
        Column("error_type", String(100)),
        Column("request_id", String(200)),
    )
    Table(
        "budgets",
        md,
        Column("scope", String(200), primary_key=True),
        Column("daily_usd", Float),
        Column("monthly_usd", Float),
        Column("alert_percents", Text, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    Table(
        "budget_spend",
        md,
        Column("scope", String(200), primary_key=True),
        Column("period", String(20), primary_key=True),
        Column("spent_nusd", BigInteger, nullable=False),
        Column("reserved_nusd", BigInteger, nullable=False),
    )
    r = Table(
        "budget_reservations",
        md,
        Column("id", String(40), primary_key=True),
        Column("created", Float, nullable=False),
        Column("expires", Float, nullable=False),
        Column("amount_nusd", BigInteger, nullable=False),
        Column("targets", Text, nullable=False),
    )
    Table(
        "budget_alerts",
        md,
        Column("scope", String(200), primary_key=True),
        Column("period", String(20), primary_key=True),
        Column("percent", Float, primary_key=True),
        Column("fired_at", Float, nullable=False),
    )
    Index("ix_usage_day", u.c.day)
    Index("ix_usage_month", u.c.month)
    Index("ix_usage_provider_day", u.c.provider, u.c.day)
    Index("ix_usage_model_day", u.c.model, u.c.day)
    Index("ix_reservations_expires", r.c.expires)
    md.create_all(conn, checkfirst=False)


def _0002_virtual_keys(conn: Connection) -> None:
    md = MetaData()
    vk = Table(
        "virtual_keys",
        md,
        Column("id", String(40), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("secret_hash", String(64), nullable=False),
        Column("prefix", String(12), nullable=False),
        Column("models", Text, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("revoked_at", Float),
    )
    Index("ux_virtual_keys_secret_hash", vk.c.secret_hash, unique=True)
    md.create_all(conn, checkfirst=False)


def _0003_leases(conn: Connection) -> None:
    md = MetaData()
    Table(
        "ledger_leases",
        md,
        Column("owner", String(40), primary_key=True),
        Column("expires_at", Float, nullable=False),
    )
    md.create_all(conn, checkfirst=False)
    # plain SQL that SQLite and PostgreSQL both take; existing rows get NULL (no owner)
    conn.execute(text("ALTER TABLE budget_reservations ADD COLUMN owner VARCHAR(40)"))
    conn.execute(text("CREATE INDEX ix_reservations_owner ON budget_reservations (owner)"))


def _0004_journal(conn: Connection) -> None:
    md = MetaData()
    Table(
        "ledger_journal",
        md,
        Column("owner", String(40), primary_key=True),
        Column("seq", BigInteger, nullable=False),
    )
    md.create_all(conn, checkfirst=False)


def _0005_responses(conn: Connection) -> None:
    md = MetaData()
    Table(
        "responses",
        md,
        Column("id", String(64), primary_key=True),
        Column("virtual_key", String(100)),
        Column("created_at", Float, nullable=False),
        Column("model", String(200), nullable=False),
        Column("input", Text, nullable=False),
        Column("response", Text, nullable=False),
    )
    md.create_all(conn, checkfirst=False)


def _0006_usage_details(conn: Connection) -> None:
    # plain SQL that SQLite and PostgreSQL both take; existing rows get 0
    for column in ("cache_write_tokens", "reasoning_tokens"):
        conn.execute(text(f"ALTER TABLE usage ADD COLUMN {column} INTEGER DEFAULT 0 NOT NULL"))


def _0007_bench(conn: Connection) -> None:
    md = MetaData()
    Table(
        "bench_runs",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("suites", Text, nullable=False),
        Column("started_at", Float, nullable=False),
        Column("finished_at", Float),
        Column("runs", Integer, nullable=False),
        Column("concurrency", Integer, nullable=False),
        Column("pairs", Text, nullable=False),
        Column("max_cost_usd", Float),
        Column("status", String(16), nullable=False),
    )
    Table(
        "bench_samples",
        md,
        Column("run_id", Integer, primary_key=True),
        Column("provider", String(200), primary_key=True),
        Column("model", String(200), primary_key=True),
        Column("case_id", String(200), primary_key=True),
        Column("repeat", Integer, primary_key=True),
        Column("task_type", String(100), nullable=False),
        Column("ok", Integer, nullable=False),
        Column("error", Text),
        Column("latency_ms", Float),
        Column("ttft_ms", Float),
        Column("prompt_tokens", Integer, nullable=False),
        Column("completion_tokens", Integer, nullable=False),
        Column("cost_usd", Float),
        Column("carbon_g", Float),
        Column("retries", Integer, nullable=False),
        Column("score", Float),
        Column("passed", Integer),
    )
    md.create_all(conn, checkfirst=False)


def _0008_budget_history(conn: Connection) -> None:
    md = MetaData()
    h = Table(
        "budget_history",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("ts", Float, nullable=False),
        Column("source", String(16), nullable=False),
        Column("total_usd", Float, nullable=False),
        Column("method", Text, nullable=False),
        Column("allocations", Text, nullable=False),
    )
    Index("ix_budget_history_source_ts", h.c.source, h.c.ts)
    md.create_all(conn, checkfirst=False)


def _0009_carbon(conn: Connection) -> None:
    # plain SQL that SQLite and PostgreSQL both take
    conn.execute(text("ALTER TABLE usage ADD COLUMN carbon_g FLOAT"))
    if conn.execute(text("SELECT 1 FROM usage LIMIT 1")).first() is not None:
        _backfill_carbon(conn)  # a new database has nothing to fill (nor loads the catalog)


def _backfill_carbon(conn: Connection) -> None:
    """Existing rows get the estimate from their tokens and the model sizes the catalog
    knows now (by model id, as a new record is sized), on the default grid: the database
    does not know a provider's configured ``carbon_intensity``. Rows of a model of unknown
    size keep NULL; rows without tokens get 0."""
    from polyroute.carbon import grams_co2e
    from polyroute.catalog import Catalog

    sizes: dict[str, float] = {}
    for entry in Catalog.load().all():
        if entry.params_b is not None:
            sizes.setdefault(entry.id, entry.params_b)
    fill = text(
        "UPDATE usage SET carbon_g = (prompt_tokens + completion_tokens) * :per_token"
        " WHERE model = :model"
    )
    for model, params in sizes.items():
        conn.execute(fill.bindparams(per_token=grams_co2e(params, 1, None), model=model))
    conn.execute(
        text(
            "UPDATE usage SET carbon_g = 0"
            " WHERE carbon_g IS NULL AND prompt_tokens + completion_tokens = 0"
        )
    )


def _0010_key_limits(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE virtual_keys ADD COLUMN rpm INTEGER"))
    conn.execute(text("ALTER TABLE virtual_keys ADD COLUMN tpm INTEGER"))


Migration = tuple[str, Callable[[Connection], None]]

MIGRATIONS: tuple[Migration, ...] = (
    ("0001_initial", _0001_initial),
    ("0002_virtual_keys", _0002_virtual_keys),
    ("0003_leases", _0003_leases),
    ("0004_journal", _0004_journal),
    ("0005_responses", _0005_responses),
    ("0006_usage_details", _0006_usage_details),
    ("0007_bench", _0007_bench),
    ("0008_budget_history", _0008_budget_history),
    ("0009_carbon", _0009_carbon),
    ("0010_key_limits", _0010_key_limits),
)


def migrate(conn: Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply what is missing of ``migrations``, in order, and record it. The caller holds a
    write transaction."""
    migrations_table.create(conn, checkfirst=True)
    done = set(conn.scalars(select(migrations_table.c.name)))
    applied = []
    for name, step in migrations:
        if name not in done:
            step(conn)
            conn.execute(migrations_table.insert().values(name=name, applied_at=time.time()))
            applied.append(name)
    return applied
