"""The budget optimizer: spend analysis and forecasts per provider, reallocation of a
monthly total within bounds, and the gateway's auto-adjust (DESIGN.md §5, §10).

Nothing here is imported by ``import polyroute``; SQL runs on the ledger's thread.
"""

from polyroute.budgeting._analyze import analyze, analyze_ledger, month_bounds, read_days
from polyroute.budgeting._auto import AutoOptimizer
from polyroute.budgeting._forecast import Forecast, forecast, weekday_factors
from polyroute.budgeting._model import (
    Allocation,
    Analysis,
    Change,
    DayUsage,
    HistoryEntry,
    Proposal,
    ProviderAnalysis,
    Source,
)
from polyroute.budgeting._optimize import (
    METHOD,
    allocate,
    apply,
    bounds_from,
    check_bounds,
    history,
    propose,
)

__all__ = [
    "METHOD",
    "Allocation",
    "Analysis",
    "AutoOptimizer",
    "Change",
    "DayUsage",
    "Forecast",
    "HistoryEntry",
    "Proposal",
    "ProviderAnalysis",
    "Source",
    "allocate",
    "analyze",
    "analyze_ledger",
    "apply",
    "bounds_from",
    "check_bounds",
    "forecast",
    "history",
    "month_bounds",
    "propose",
    "read_days",
    "weekday_factors",
]
