"""Virtual keys changed by one process (``polyroute keys``), told to every gateway replica."""

from __future__ import annotations

from typing import Literal

from polyroute.shared._shared import Shared

KEYS_CHANNEL = "keys"
"""Messages ``{"id": <key id>, "change": "created" | "revoked" | "changed"}``."""

KeyChange = Literal["created", "revoked", "changed"]


async def announce_key_change(redis_url: str, key_id: str, change: KeyChange) -> bool:
    """Tell the gateways sharing ``redis_url`` that ``key_id`` changed: each drops what it
    cached about it at once. Whether the message went out (true without Redis: nothing
    to tell; false: Redis unreachable, so replicas notice within their key cache's TTL)."""
    if not redis_url:
        return True
    shared = Shared(redis_url)
    try:
        return await shared.publish(KEYS_CHANNEL, {"id": key_id, "change": change})
    finally:
        await shared.aclose()
