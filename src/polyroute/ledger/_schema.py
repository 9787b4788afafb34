"""Tables and named migrations. Imported only by the ledger's database thread.

A migration is a name and a function of a connection. Applied names are
recorded in ``schema_migrations``; opening a ledger applies the missing ones
in order, inside one write transaction, so two processes opening a new
database at once cannot both migrate it.
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
)

alerts = Table(
    "budget_alerts",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("percent", Float, primary_key=True),
    Column("fired_at", Float, nullable=False),
)

# The indexes `polyroute usage` answers from: by time, and by provider or model within time.
# Defined on their tables' columns, they are created with the tables.
_INDEXES = (
    Index("ix_usage_day", usage.c.day),
    Index("ix_usage_month", usage.c.month),
    Index("ix_usage_provider_day", usage.c.provider, usage.c.day),
    Index("ix_usage_model_day", usage.c.model, usage.c.day),
    Index("ix_reservations_expires", reservations.c.expires),
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
)
# every gateway request looks its key up by hash: one unique index answers it
_KEY_INDEX = Index("ux_virtual_keys_secret_hash", virtual_keys.c.secret_hash, unique=True)


def _initial(conn: Connection) -> None:
    for table in (usage, budgets, spend, reservations, alerts):
        table.create(conn)


def _virtual_keys(conn: Connection) -> None:
    virtual_keys.create(conn)


MIGRATIONS: tuple[tuple[str, Callable[[Connection], None]], ...] = (
    ("0001_initial", _initial),
    ("0002_virtual_keys", _virtual_keys),
)


def migrate(conn: Connection) -> list[str]:
    """Apply what is missing, in order, and record it. The caller holds a write transaction."""
    migrations_table.create(conn, checkfirst=True)
    done = set(conn.scalars(select(migrations_table.c.name)))
    applied = []
    for name, step in MIGRATIONS:
        if name not in done:
            step(conn)
            conn.execute(migrations_table.insert().values(name=name, applied_at=time.time()))
            applied.append(name)
    return applied
