"""What replicas of one deployment share, through Redis (``[storage] redis_url``)."""

from polyroute.shared._keys import (
    BUDGETS_CHANNEL,
    KEYS_CHANNEL,
    KeyChange,
    announce_budget_change,
    announce_key_change,
)
from polyroute.shared._shared import SCHEMES, Handler, Shared
from polyroute.shared._sync import SharedBreakers, SharedHealth, SharedLatency, share

__all__ = [
    "BUDGETS_CHANNEL",
    "KEYS_CHANNEL",
    "SCHEMES",
    "Handler",
    "KeyChange",
    "Shared",
    "SharedBreakers",
    "SharedHealth",
    "SharedLatency",
    "announce_budget_change",
    "announce_key_change",
    "share",
]
