"""The optimizer's plain values: a day of usage, an analysis, a proposal, a history entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

Source = Literal["cli", "auto"]
"""Who applied an allocation: ``budget optimize --apply``, or the gateway's auto-adjust."""


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One provider's requests on one UTC day."""

    provider: str
    day: date
    requests: int
    failed: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class ProviderAnalysis:
    provider: str
    spent_usd: float
    """This month so far."""
    spent_today_usd: float
    spent_week_usd: float
    """The last 7 days, today included."""
    limit_usd: float | None
    """The monthly limit in force; ``None``: none."""
    forecast_usd: float | None
    """This month's total as forecast (``None``: no history to forecast from)."""
    forecast_low_usd: float | None
    forecast_high_usd: float | None
    utilisation: float | None
    """Spent this month / limit."""
    efficiency: float | None
    success_rate: float | None
    cost_per_success_usd: float | None
    trend: float | None
    """Change in daily spend over a week, relative to its level (0.1: +10 % a week)."""
    history_days: int
    outage_days: tuple[date, ...]
    """Days in the window whose requests mostly failed (left out of the forecast)."""
    outage_since: date | None
    """The first day of an outage still going on (its last day with requests failed)."""
    method: str | None

    def as_dict(self) -> dict[str, Any]:
        """One row of DESIGN.md §5's ``budget analyze`` ``providers``."""
        return {
            "provider": self.provider,
            "spent_usd": round(self.spent_usd, 6),
            "limit_usd": self.limit_usd,
            "forecast_usd": _r(self.forecast_usd),
            "forecast_low_usd": _r(self.forecast_low_usd),
            "forecast_high_usd": _r(self.forecast_high_usd),
            "utilisation": _r(self.utilisation, 4),
            "efficiency": _r(self.efficiency, 4),
            "success_rate": _r(self.success_rate, 4),
            "cost_per_success_usd": _r(self.cost_per_success_usd, 9),
            "trend": _r(self.trend, 4),
        }


@dataclass(frozen=True, slots=True)
class Analysis:
    period: str
    """The month forecast to its end: ``2026-12``."""
    providers: tuple[ProviderAnalysis, ...]
    underused: tuple[str, ...]
    overused: tuple[str, ...]
    recommendations: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "providers": [p.as_dict() for p in self.providers],
            "underused": list(self.underused),
            "overused": list(self.overused),
            "recommendations": list(self.recommendations),
        }


@dataclass(frozen=True, slots=True)
class Allocation:
    provider: str
    current_usd: float | None
    """The monthly limit now; ``None``: none."""
    proposed_usd: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "current_usd": self.current_usd,
            "proposed_usd": self.proposed_usd,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Proposal:
    total_usd: float
    method: str
    allocations: tuple[Allocation, ...]
    applied: bool = False

    def as_dict(self) -> dict[str, Any]:
        """DESIGN.md §5's ``budget optimize`` shape."""
        return {
            "total_usd": self.total_usd,
            "method": self.method,
            "allocations": [a.as_dict() for a in self.allocations],
            "applied": self.applied,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """One provider's monthly limit as an applied allocation left it."""

    provider: str
    previous_usd: float | None
    new_usd: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "previous_usd": self.previous_usd,
            "new_usd": self.new_usd,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        return cls(d["provider"], d["previous_usd"], d["new_usd"], d["reason"])


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: int
    ts: float
    source: Source
    total_usd: float
    method: str
    changes: tuple[Change, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="seconds"),
            "source": self.source,
            "total_usd": self.total_usd,
            "method": self.method,
            "changes": [c.as_dict() for c in self.changes],
        }


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)
