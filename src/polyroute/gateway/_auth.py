"""Who is calling: the admin key, a virtual key, or anyone (no admin key set).

With an admin key (``$POLYROUTE_ADMIN_KEY``) every ``/v1`` call needs
``Authorization: Bearer <key>`` or ``x-api-key: <key>``: the admin key itself
or an active virtual key (``polyroute keys create``). Virtual keys are checked
with :meth:`Ledger.verify_key` and the answer, found or not, is kept in
process for :data:`KEY_CACHE_S` seconds, so the request path makes no database
trip per request. The price: a revoked key keeps working for up to that long
in each gateway process that saw it recently, unless the process hears of the
change: ``polyroute keys`` announces it through Redis (``[storage] redis_url``)
and every replica's :meth:`Auth.forget` drops the key at once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers

from polyroute._frozen import fast_init
from polyroute.errors import GatewayError
from polyroute.ledger import VirtualKey

KEY_CACHE_S = 5.0
"""How long a key's verdict is reused: a revocation's delay, at most."""
KEY_CACHE_SIZE = 10_000

Verify = Callable[[str], Awaitable[VirtualKey | None]]


@fast_init
@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: ``admin`` (the admin key, or anyone when none is set)
    or the holder of ``key``."""

    admin: bool
    key: VirtualKey | None = None

    @property
    def key_id(self) -> str | None:
        """The virtual key to bill (``None`` for the admin)."""
        return None if self.key is None else self.key.id


OPEN = Caller(admin=True)


def presented(headers: Headers) -> str | None:
    """The key a request presents: ``x-api-key``, else a bearer token (each header's first
    occurrence, as ``headers.get`` reads it)."""
    # one pass: ``Headers.get`` scans the list per name, and raises and catches a KeyError
    # for an absent one (2.2 us a request with an SDK's seventeen headers, 0.8 us here)
    key = auth = None
    for name, value in headers.raw:
        if name == b"authorization" and auth is None:
            auth = value
        elif name == b"x-api-key" and key is None:
            key = value
    if key:
        return key.decode("latin-1")
    if auth and auth[:7].lower() == b"bearer ":
        return auth.decode("latin-1")[7:].strip() or None
    return None


class Auth:
    """Checks keys; verdicts on virtual keys are cached (see module docs)."""

    def __init__(
        self,
        admin_key: str | None,
        verify: Verify,
        *,
        ttl_s: float = KEY_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin_key.encode() if admin_key else None
        self._verify = verify
        self.ttl_s = ttl_s
        self.clock = clock
        # digest -> (until, the caller; None: refused, unknown or revoked)
        self._cache: dict[bytes, tuple[float, Caller | None]] = {}

    @property
    def enabled(self) -> bool:
        return self._admin is not None

    def _is_admin(self, secret: str) -> bool:
        return self._admin is not None and hmac.compare_digest(secret.encode(), self._admin)

    async def caller(self, headers: Headers) -> Caller:
        """The caller of a ``/v1`` request; raises :class:`GatewayError` 401 if refused."""
        if self._admin is None:
            return OPEN
        secret = presented(headers)
        if secret is None:
            raise GatewayError(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                status=401,
            )
        if self._is_admin(secret):
            return OPEN
        # keyed by digest: the cache holds no secrets
        digest = hashlib.sha256(secret.encode()).digest()
        now = self.clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            caller = hit[1]
        else:
            caller = await self._verified(secret, digest, now)
        if caller is None:
            raise GatewayError("invalid API key (unknown or revoked)", status=401)
        return caller

    def require_admin(self, headers: Headers) -> None:
        """Admin endpoints (``/router/state``, ``/usage``, ``/metrics``): the admin key, when
        one is set."""
        if self._admin is None:
            return
        secret = presented(headers)
        if secret is None or not self._is_admin(secret):
            raise GatewayError("this endpoint needs the admin key", status=401)

    def forget(self, key_id: str) -> None:
        """``key_id`` changed elsewhere (revoked, new limits; or created, when a verdict of
        "unknown" may be about its secret): drop its verdict and every "unknown" one."""
        cache = self._cache
        for d in [d for d, (_, c) in cache.items() if c is None or c.key_id == key_id]:
            del cache[d]

    def clear(self) -> None:
        """Drop every verdict (key changes may have been missed)."""
        self._cache.clear()

    def on_key_message(self, message: dict[str, Any]) -> None:
        """A message on ``polyroute.shared.KEYS_CHANNEL``: ``{"id": ..., "change": ...}``."""
        key_id = message.get("id")
        if isinstance(key_id, str):
            self.forget(key_id)
        else:
            self.clear()

    async def _verified(self, secret: str, digest: bytes, now: float) -> Caller | None:
        """Check a virtual key with no fresh verdict in the cache (asked at ``now``), and
        keep the verdict."""
        key = await self._verify(secret)
        caller = None if key is None or not key.active else Caller(admin=False, key=key)
        cache = self._cache
        if len(cache) >= KEY_CACHE_SIZE:  # bounded: drop the stale, else start over
            for d in [d for d, (until, _) in cache.items() if until <= now]:
                del cache[d]
            if len(cache) >= KEY_CACHE_SIZE:
                cache.clear()
        cache[digest] = (now + self.ttl_s, caller)
        return caller
