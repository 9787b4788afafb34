"""Accounting: the usage ledger, budgets and their reservations, and gateway virtual keys.

The public surface is :class:`Ledger` and its plain value types; SQL lives
in private modules loaded by the ledger's own thread, so importing this
package does not import SQLAlchemy.
"""

from polyroute.ledger._keys import VirtualKey
from polyroute.ledger._ledger import (
    KEEP,
    Governing,
    Ledger,
    config_budgets,
    ledger_for,
    storage_url,
)
from polyroute.ledger._meter import (
    DEFAULT_OUTPUT_BOUND,
    Meter,
    Metered,
    MeteredEmbedding,
    embedding_worst_case_usd,
    output_bound,
    worst_case_usd,
)
from polyroute.ledger._records import (
    GLOBAL,
    BudgetLimits,
    BudgetStatus,
    GroupBy,
    PeriodKind,
    PeriodStatus,
    Reservation,
    UsageRecord,
    UsageReport,
    UsageRow,
    key_scope,
    parse_since,
    provider_scope,
)
from polyroute.tokens import prompt_token_bound

__all__ = [
    "DEFAULT_OUTPUT_BOUND",
    "GLOBAL",
    "KEEP",
    "BudgetLimits",
    "BudgetStatus",
    "Governing",
    "GroupBy",
    "Ledger",
    "Meter",
    "Metered",
    "MeteredEmbedding",
    "PeriodKind",
    "PeriodStatus",
    "Reservation",
    "UsageRecord",
    "UsageReport",
    "UsageRow",
    "VirtualKey",
    "config_budgets",
    "embedding_worst_case_usd",
    "key_scope",
    "ledger_for",
    "output_bound",
    "parse_since",
    "prompt_token_bound",
    "provider_scope",
    "storage_url",
    "worst_case_usd",
]
