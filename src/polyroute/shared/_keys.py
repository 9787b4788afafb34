"""Virtual keys and budgets changed by one process (``polyroute keys``, ``polyroute budget
set``), told to every gateway replica."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from polyroute.shared._shared import Shared

KEYS_CHANNEL = "keys"
"""Messages ``{"id": <key id>, "change": "created" | "revoked" | "changed"}``."""
BUDGETS_CHANNEL = "budgets"
"""Messages ``{"budget": <provider id, or "global">}``: its limits changed."""

KeyChange = Literal["created", "revoked", "changed"]


async def announce_key_change(redis_url: str, key_id: str, change: KeyChange) -> bool:
    """Tell the gateways sharing ``redis_url`` that ``key_id`` changed: each drops what it
    cached about it at once. Whether the message went out (true without Redis: nothing
    to tell; false: Redis unreachable, so replicas notice within their key cache's TTL)."""
    return await _announce(redis_url, KEYS_CHANNEL, {"id": key_id, "change": change})


async def announce_budget_change(redis_url: str, budget_id: str) -> bool:
    """Tell the gateways sharing ``redis_url`` that budget ``budget_id`` (a provider id or
    ``"global"``) changed: each drops its routing hint about it (the ledger reads the new
    limits within its refresh, 1 s). Whether the message went out, as above."""
    return await _announce(redis_url, BUDGETS_CHANNEL, {"budget": budget_id})


async def _announce(redis_url: str, channel: str, message: Mapping[str, Any]) -> bool:
    if not redis_url:
        return True
    shared = Shared(redis_url)
    try:
        return await shared.publish(channel, message)
    finally:
        await shared.aclose()
