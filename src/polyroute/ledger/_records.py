"""What the ledger stores and answers, as plain values (no SQL here)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, Literal

from polyroute._frozen import fast_init
from polyroute.types import MAX_USD

Status = Literal["ok", "error", "cancelled"]
GroupBy = Literal["day", "month", "provider", "model"]
PeriodKind = Literal["daily", "monthly"]

NANO = 1_000_000_000
"""Money is stored as integer nano-dollars: sums stay exact, a token of the
cheapest model is still representable, and int64 holds $9 billion."""

MAX_NUSD = int(MAX_USD) * NANO
MAX_SUM_NUSD = 3 * MAX_NUSD
"""Accumulated spend and holds stop growing here: spent + held + a new hold (at most
MAX_NUSD) still fits in 64 bits, so neither the columns nor the budget check overflow."""

GLOBAL = "global"


def check_usd(field: str, value: float) -> float:
    """``value`` if it is a finite USD amount from 0 to MAX_USD; else :class:`ValueError`
    naming ``field``."""
    if not 0 <= value <= MAX_USD:  # also refuses nan and inf
        raise ValueError(f"{field} must be 0 or more, up to {MAX_USD:,.0f} USD, not {value!r}")
    return float(value)


def to_nusd(usd: float, *, up: bool = False) -> int:
    """USD -> nano-dollars, clamped to +-MAX_NUSD (a cost past $1 billion is a broken price
    or usage, and must not overflow the database); ``up`` rounds a reservation up so it
    never under-reserves."""
    if not -MAX_USD <= usd <= MAX_USD:  # nan too: counted as the most, never as nothing
        return -MAX_NUSD if usd < 0 else MAX_NUSD
    nusd = usd * NANO
    # less float noise than half a thousandth first, so 0.001 USD is 1,000,000 and not
    # 1,000,001 (round(nusd, 3) did that at 3k instructions, twice a budgeted request)
    return math.ceil(nusd - 0.0005) if up else round(nusd)


def to_usd(nusd: int | None) -> float:
    return (nusd or 0) / NANO


def provider_scope(provider_id: str) -> str:
    return f"provider:{provider_id}"


def key_scope(key_id: str) -> str:
    return f"key:{key_id}"


DAY_S = 86_400
"""Unix time has exactly this many seconds a UTC day: the day of ``ts`` is ``ts // DAY_S``,
which the period keys are named by (and :class:`~polyroute.ledger._ledger.Governing`'s
slice keys change with)."""


def day_of(ts: float) -> str:
    """The UTC day of ``ts``."""
    return _day_name(int(ts // DAY_S))


@lru_cache(maxsize=64)  # a handful of days are live; the ledger asks ~6 times per record
def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_S, UTC).strftime("%Y-%m-%d")


def parse_since(value: str, now: float | None = None) -> float:
    """The start (Unix time) of a reports' ``since``: ``YYYY-MM-DD`` (UTC) or ``Nd``, the
    last N days, today included. Raises :class:`ValueError` saying what is wrong."""
    today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
    text = value.strip()
    m = re.fullmatch(r"(\d{1,7})d", text)
    if m and int(m.group(1)) < 1:
        raise ValueError("must be at least 1d")
    try:
        if m:
            day = today - timedelta(days=int(m.group(1)) - 1)
        else:
            day = datetime.strptime(text, "%Y-%m-%d").date()
    except (ValueError, OverflowError):  # not a date, or before year 1
        raise ValueError(f"must be YYYY-MM-DD or Nd (e.g. 30d), not {value[:40]!r}") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def period_key(kind: PeriodKind, ts: float) -> str:
    """The UTC day or month ``ts`` falls in: ``day:2026-11-26`` or ``month:2026-11``."""
    day = day_of(ts)
    return f"day:{day}" if kind == "daily" else f"month:{day[:7]}"


@fast_init
@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One attempt at one provider: what it used, cost, took and how it ended."""

    new: ClassVar[type[UsageRecord]]
    """:meth:`__init__` without the type call (see :mod:`polyroute._frozen`)."""

    ts: float
    """When the attempt started (Unix seconds); its UTC day and month are its periods."""
    provider: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = 0.0
    """``None``: the model is unpriced (shown as such, never as free)."""
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: Status = "ok"
    error_type: str | None = None
    request_id: str | None = None
    virtual_key: str | None = None
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (a subset of ``prompt_tokens``)."""
    reasoning_tokens: int = 0
    """Output tokens spent reasoning (a subset of ``completion_tokens``)."""
    carbon_g: float | None = None
    """Estimated gCO2e (:func:`polyroute.carbon.estimate_g`); ``None``: the model's size is
    unknown (or a journal line from before the estimate existed)."""

    def scopes(self) -> list[str]:
        """Every budget scope this attempt counts against."""
        out = [GLOBAL, provider_scope(self.provider)]
        if self.virtual_key:
            out.append(key_scope(self.virtual_key))
        return out


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Limits of one scope; ``None`` is no limit for that period."""

    daily_usd: float | None = None
    monthly_usd: float | None = None
    alert_percents: tuple[float, ...] = (50, 75, 90)

    def for_period(self, kind: PeriodKind) -> float | None:
        return self.daily_usd if kind == "daily" else self.monthly_usd

    @property
    def empty(self) -> bool:
        return self.daily_usd is None and self.monthly_usd is None


@fast_init
@dataclass(frozen=True, slots=True)
class Reservation:
    """Worst-case money held against budgets until :meth:`Ledger.record` settles it."""

    id: str
    amount_usd: float
    targets: tuple[tuple[str, str], ...]
    """(scope, period) pairs holding it; empty when no budget applied."""


@dataclass(frozen=True, slots=True)
class PeriodStatus:
    kind: PeriodKind
    period: str
    limit_usd: float | None
    spent_usd: float
    reserved_usd: float

    @property
    def left_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.partition(":")[2],
            "limit_usd": self.limit_usd,
            "spent_usd": round(self.spent_usd, 9),
            "reserved_usd": round(self.reserved_usd, 9),
            "left_usd": None if self.left_usd is None else round(self.left_usd, 9),
        }


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    scope: str
    source: Literal["config", "cli", "none"]
    """Where the limits come from: the config file, ``polyroute budget set``, or nowhere."""
    limits: BudgetLimits
    daily: PeriodStatus
    monthly: PeriodStatus

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "source": self.source,
            "alert_percents": list(self.limits.alert_percents),
            "daily": self.daily.as_dict(),
            "monthly": self.monthly.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    carbon_g: float = 0.0
    """Estimated gCO2e of the records that have an estimate."""
    carbon_tokens: int = 0
    """Prompt plus completion tokens of those records (what a baseline is estimated on)."""


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Ledger totals grouped ``by`` one key (DESIGN.md §5 ``usage`` shape)."""

    by: GroupBy
    rows: Sequence[UsageRow] = field(default_factory=tuple)
    carbon_baseline: str | None = None
    """``provider/model`` the savings are measured against (``[router] carbon_baseline``)."""
    carbon_baseline_g: float | None = None
    """The estimate of the same tokens through the baseline."""

    @property
    def total_cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.rows)

    @property
    def total_carbon_g(self) -> float:
        return sum(r.carbon_g for r in self.rows)

    @property
    def carbon_tokens(self) -> int:
        return sum(r.carbon_tokens for r in self.rows)

    @property
    def carbon_saved_g(self) -> float | None:
        """Baseline minus actual (negative: more than the baseline); ``None``: no baseline."""
        if self.carbon_baseline_g is None:
            return None
        return self.carbon_baseline_g - self.total_carbon_g

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total_cost_usd": round(self.total_cost_usd, 9),
            "total_carbon_g": round(self.total_carbon_g, 9),
            "requests": self.requests,
            "rows": [
                {
                    self.by: r.key,
                    "requests": r.requests,
                    "failed": r.failed,
                    "prompt_tokens": r.prompt_tokens,
                    "completion_tokens": r.completion_tokens,
                    "cached_tokens": r.cached_tokens,
                    "cache_write_tokens": r.cache_write_tokens,
                    "reasoning_tokens": r.reasoning_tokens,
                    "cost_usd": round(r.cost_usd, 9),
                    "carbon_g": round(r.carbon_g, 9),
                }
                for r in self.rows
            ],
        }
        saved = self.carbon_saved_g
        if saved is not None:
            out["carbon_baseline"] = self.carbon_baseline
            out["carbon_saved_g"] = round(saved, 9)
        return out
