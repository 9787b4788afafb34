"""The limiter: which scopes a call is held against, its holds, and who is blocked now."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from polyroute.errors import ProviderLimitError, RateLimitedError, rate_refusal
from polyroute.limits._redis import RedisWindows, Unreachable
from polyroute.limits._window import LocalWindows, Rate, Refused

if TYPE_CHECKING:
    from polyroute.config import Settings
    from polyroute.ledger import VirtualKey
    from polyroute.shared import Shared

_NONE: Mapping[str, str] = MappingProxyType({})


def key_scope(key_id: str) -> str:
    return f"key:{key_id}"


def provider_scope(provider_id: str) -> str:
    return f"provider:{provider_id}"


class Hold:
    """An admitted call's place in its windows: settle it once, to the tokens it used."""

    __slots__ = ("_windows", "hold", "scopes")

    def __init__(
        self, windows: LocalWindows | RedisWindows, scopes: tuple[str, ...], hold: str
    ) -> None:
        self._windows, self.scopes, self.hold = windows, scopes, hold

    def settle(self, tokens: int) -> None:
        """The call ended having used ``tokens`` (failed calls: what they billed)."""
        self._windows.settle(self.scopes, self.hold, tokens)

    def release(self) -> None:
        """No call was made after all (a budget refused it): the entry goes."""
        self._windows.settle(self.scopes, self.hold, None)


class Limiter:
    """Rate limits of providers (config ``rpm``/``tpm``) and virtual keys (``keys create``).

    Owned by one :class:`~polyroute.Polyroute`. With ``shared`` windows (Redis), limits hold
    across every replica; while they are unusable, this process's own windows stand in.
    """

    def __init__(
        self,
        providers: Mapping[str, Rate],
        *,
        shared: RedisWindows | None = None,
        lookup: Callable[[str], Awaitable[VirtualKey | None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``lookup``: a virtual key by id (the ledger's), for keys not met through
        :meth:`know`: asked once per key and process."""
        self.providers = {pid: rate for pid, rate in providers.items() if rate}
        self.keys: dict[str, Rate] = {}
        """Virtual keys' limits by id (an empty :class:`Rate`: none), as the gateway
        verified them (:meth:`know`) or ``lookup`` found them."""
        self.lookup = lookup
        self.local = LocalWindows(clock)
        self.shared = shared
        self.clock = clock
        self._blocked: dict[str, tuple[float, Refused]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        shared: Shared | None = None,
        lookup: Callable[[str], Awaitable[VirtualKey | None]] | None = None,
    ) -> Limiter:
        """``shared``: with Redis (``enabled``), windows across every replica."""
        windows = RedisWindows(shared) if shared is not None and shared.enabled else None
        providers = {pid: Rate(p.rpm, p.tpm) for pid, p in settings.providers.items()}
        return cls(providers, shared=windows, lookup=lookup)

    def know(self, key: VirtualKey) -> None:
        """Take ``key``'s limits (the gateway calls this as it verifies a key)."""
        self.keys[key.id] = Rate(key.rpm or 0, key.tpm or 0)

    def applies(self, provider: str, key: str | None) -> bool:
        """Whether a call to ``provider`` for ``key`` may be limited (no: no admission)."""
        if provider in self.providers:
            return True
        if key is None:
            return False
        rate = self.keys.get(key)
        return bool(rate) if rate is not None else self.lookup is not None

    async def admit(self, provider: str, key: str | None, tokens: int) -> Hold | None:
        """Hold ``tokens`` (the call's worst case) in the key's and the provider's windows,
        both or neither (``None``: neither limits it). Raises :class:`RateLimitedError`
        (the key's limit) or :class:`ProviderLimitError` (the provider's)."""
        scopes: list[tuple[str, Rate]] = []
        if key is not None:
            key_rate = self.keys.get(key)
            if key_rate is None and self.lookup is not None:
                found = await self.lookup(key)
                key_rate = self.keys[key] = (
                    Rate(found.rpm or 0, found.tpm or 0) if found else Rate()
                )
            if key_rate:
                scopes.append((key_scope(key), key_rate))
        provider_rate = self.providers.get(provider)
        if provider_rate is not None:
            scopes.append((provider_scope(provider), provider_rate))
        if not scopes:
            return None
        hold = secrets.token_hex(8)
        names = tuple(s for s, _ in scopes)
        shared = self.shared
        if shared is not None and shared.usable:
            answer = await shared.admit(scopes, tokens, hold)
            if not isinstance(answer, Unreachable):
                return self._held(answer, Hold(shared, names, hold), provider)
        # no Redis, or it does not answer: this process's windows
        return self._held(
            self.local.admit(scopes, tokens, hold), Hold(self.local, names, hold), provider
        )

    def _held(self, refused: Refused | None, hold: Hold, provider: str) -> Hold:
        if refused is not None:
            raise self._refusal(refused, provider)
        return hold

    def _refusal(self, r: Refused, provider: str) -> RateLimitedError | ProviderLimitError:
        if r.scope.startswith("key:"):
            return RateLimitedError(
                scope=r.scope,
                limit=r.limit,
                per_minute=r.per_minute,
                requested=r.requested,
                retry_after=r.retry_after,
            )
        if r.retry_after is not None:  # routing leaves the provider out until then
            self._blocked[provider] = (self.clock() + r.retry_after, r)
        message = rate_refusal(r.scope, r.limit, r.per_minute, r.requested, r.retry_after)
        return ProviderLimitError(message, provider=provider, retry_after=r.retry_after)

    def blocked(self) -> Mapping[str, str]:
        """Providers a limit refused lately, until the window admits again, each with why
        (a router check: cheap when nothing is blocked)."""
        if not self._blocked:
            return _NONE
        now = self.clock()
        out: dict[str, str] = {}
        for pid, (until, r) in list(self._blocked.items()):
            if until <= now:
                del self._blocked[pid]
            else:
                out[pid] = (
                    f"rate limit {r.limit} {r.per_minute:,} reached, "
                    f"retry in {math.ceil(until - now)}s"
                )
        return out

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
