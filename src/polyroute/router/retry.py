"""When to retry a failed call on the same target, and how long to wait first.

Transient failures (408, 409, 429 other than an exhausted quota, 5xx, 529,
timeouts, dropped connections, a garbled body or a cut stream) are retried on
the same (provider, model) per :class:`RetryPolicy`; anything else says that
this provider cannot serve this request (bad key, unknown model, prompt too
long, content filter, unsupported feature, quota gone) and the executor falls
back at once. :func:`backoff_delay` is the one place a retry delay is computed.
A wait never runs past the request's deadline: when the vendor's ``retry_after``
is longer than the time left, the executor falls back at once
(:meth:`RetryPolicy.no_wait_reason` says why, for the attempt's record).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyroute.errors import ProviderError

if TYPE_CHECKING:
    from polyroute.config import RouterConfig

_MAX_EXPONENT = 60  # 2**60 * any sane base is far past any cap; avoids float overflow


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same provider may help: the error's own ``retryable`` flag."""
    return isinstance(exc, ProviderError) and exc.retryable


def backoff_delay(
    retry: int,
    *,
    retry_after: float | None,
    base_s: float = 0.5,
    cap_s: float = 8.0,
    rng: random.Random,
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry).

    Full jitter: uniform in ``[0, min(cap_s, base_s * 2**retry)]``, so
    clients that failed together do not retry together. Never less than the
    vendor's ``retry_after`` when it sent one (which may exceed ``cap_s``:
    the vendor's word wins; :class:`RetryPolicy` decides whether to wait).
    """
    if retry < 0:
        raise ValueError(f"retry must be >= 0, not {retry}")
    ceiling = min(cap_s, base_s * 2 ** min(retry, _MAX_EXPONENT))
    delay = rng.uniform(0.0, max(ceiling, 0.0))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to retry one target, and how long a vendor may make us wait."""

    retries_per_provider: int = 1
    base_s: float = 0.5
    cap_s: float = 8.0
    max_retry_after_s: float = 30.0
    """A ``retry_after`` above this means "fall back now": another provider beats waiting."""

    @classmethod
    def from_config(cls, router: RouterConfig) -> RetryPolicy:
        return cls(retries_per_provider=router.retries_per_provider)

    def delay(
        self,
        retry: int,
        exc: BaseException,
        rng: random.Random,
        time_left_s: float | None = None,
    ) -> float | None:
        """Seconds to wait before retry number ``retry`` after ``exc``; ``None``: don't retry.

        ``None`` when the error is not transient, the retries are used up, the
        vendor asks for a longer wait than ``max_retry_after_s`` or than the
        ``time_left_s`` of the request (a wait past its deadline is no retry).
        A backoff of our own is cut to the time left.
        """
        if not is_transient(exc) or retry >= self.retries_per_provider:
            return None
        if self.no_wait_reason(exc, time_left_s) is not None:
            return None
        retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
        wait = backoff_delay(
            retry, retry_after=retry_after, base_s=self.base_s, cap_s=self.cap_s, rng=rng
        )
        return wait if time_left_s is None else min(wait, max(time_left_s, 0.0))

    def no_wait_reason(self, exc: BaseException, time_left_s: float | None) -> str | None:
        """Why the vendor's ``retry_after`` rules a retry out (too long a wait, or longer than
        the ``time_left_s`` of the request), or ``None``."""
        retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
        if retry_after is None:
            return None
        if retry_after > self.max_retry_after_s:
            return f"retry-after {retry_after:g}s is over {self.max_retry_after_s:g}s: not waited"
        if time_left_s is not None and retry_after > time_left_s:
            left = max(time_left_s, 0.0)
            return f"retry-after {retry_after:g}s is past the request's timeout ({left:.1f}s left)"
        return None
