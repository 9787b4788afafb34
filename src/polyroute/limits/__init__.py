"""Rate limits: requests (``rpm``) and tokens (``tpm``) a minute, per virtual key and per
provider (DESIGN.md §4, §5).

Algorithm: a 60-second sliding window log. Every admitted call is an entry (time,
tokens); a scope admits one more when, over the last 60 s, it holds fewer than ``rpm``
entries and their tokens plus the new call's worst case come to at most ``tpm``. Exact at
every instant (no burst at a window's edge, as fixed windows allow); memory: one entry
per call of the last minute per limited scope.

Tokens are held at the call's worst case (the prompt's upper bound plus its max output:
the bound budget reservations use, :mod:`polyroute.tokens`) and settled to the vendor's
reported usage when the call ends, like money: a small answer frees the rest of its hold
at once. A refusal says when the window admits the request (``retry_after``): when enough
of its oldest entries have aged out.

What counts: each call to a provider (an attempt, so a fallback after a failure counts
again for the key: it is another upstream request). A key's refusal is
:class:`~polyroute.errors.RateLimitedError` (the caller's own limit: 429, no fallback);
a provider's is :class:`~polyroute.errors.ProviderLimitError` (a subclass of the upstream
``RateLimitError``: the executor falls back at once, routing leaves the provider out
until its window admits again, and a pin to it is a 429).

Without Redis the windows live in each process; with ``[storage] redis_url``, in Redis,
one atomic script per admission and one per settlement (:mod:`._redis`); while Redis
is unreachable, each process's own windows stand in. A call that no
limit covers makes no admission at all.
"""

from polyroute.limits._limiter import Hold, Limiter
from polyroute.limits._redis import RedisWindows
from polyroute.limits._window import WINDOW_S, LocalWindows, Rate, Refused

__all__ = [
    "WINDOW_S",
    "Hold",
    "Limiter",
    "LocalWindows",
    "Rate",
    "RedisWindows",
    "Refused",
]
