"""One error tree for everything polyroute raises.

::

    PolyrouteError
    ├── ConfigError                      bad config file, key or value (CLI exit 2)
    │   ├── BudgetBoundsError            optimizer bounds that no allocation can meet (exit 2)
    │   └── PluginError                  an installed plugin (entry point) cannot be loaded
    ├── CredentialError                  vault: wrong passphrase, tampered file, unknown id
    │   ├── WrongPassphraseError         the master passphrase does not open the vault
    │   └── UnknownKeyError              no gateway virtual key has this id (CLI exit 2)
    ├── BudgetExceeded                   a budget refused the request (CLI exit 3)
    ├── RateLimitedError                 a virtual key's own rpm/tpm refused the request (429)
    ├── LedgerError                      the usage database cannot be used
    │   └── LedgerUnavailableError       it cannot be reached (down, connection lost): 503
    ├── GatewayError                     the gateway refuses a request (``status``: 400, 401...)
    │   └── UnknownResponseError         no stored response with this id for this key (404)
    ├── FusionError                      a fusion could not give a result
    │   ├── NotEnoughAnswersError        fewer than two panel members answered (CLI exit 4)
    │   └── FusionCostCapError           the panel's worst case is over ``max_cost_usd`` (exit 3)
    ├── HookRefusal                      a hook refused the request, with its reason (400)
    ├── HookError                        a hook raised or ran out of time (500; ``hook`` names it)
    ├── BenchError                       ``polyroute bench`` cannot run as asked
    │   ├── SuiteError                   a bad suite: file, case and field named (exit 2)
    │   ├── UnknownRunError              no benchmark run with this id (exit 2)
    │   └── ReportError                  ``--report`` cannot be written: no matplotlib, bad DIR (exit 2)
    └── ProviderError                    a call to a vendor failed
        ├── APIConnectionError           connection refused, reset, DNS     retryable
        │   └── APITimeoutError          no answer in time                  retryable
        │       └── PoolTimeoutError     no free connection in time         retryable
        ├── InvalidResponseError         a body that is not the vendor's format
        │   └── ResponseTooLargeError    an answer over ``[gateway] max_response_mb``
        ├── UnsupportedError             the vendor cannot take this request (no embeddings API,
        │                                URL images on Ollama...): fall back, don't retry
        ├── StreamInterruptedError       the stream ended without its end marker
        ├── RoutingError                 routing could not place or serve a request (CLI exit 4)
        │   ├── AllProvidersFailedError  no target could serve the request (``attempts`` lists why)
        │   ├── NoCandidateError         routing found no eligible pair (``excluded`` lists why)
        │   │   └── UnknownModelError    a pin to a model its provider does not list (404)
        │   └── InvalidModelError        a model name that is not a plain model id (400, exit 2)
        └── APIStatusError               the vendor answered with an error status
            ├── BadRequestError              400
            │   ├── ContextLengthError       400, the prompt does not fit
            │   └── JSONTooDeepError         400, the caller's JSON nests too deep (before any call)
            ├── AuthenticationError          401
            ├── PermissionDeniedError        403
            ├── NotFoundError                404 (unknown model, usually)
            ├── RequestTimeoutError          408                         retryable
            ├── ConflictError                409                         retryable
            ├── RequestTooLargeError         413
            ├── UnprocessableEntityError     422
            ├── RateLimitError               429 (``retry_after``)      retryable
            │   ├── QuotaExceededError       429, credit or spend limit: waiting won't help
            │   └── ProviderLimitError       the provider's configured rpm/tpm: no call made, fall back
            ├── ContentFilterError           refused for safety
            └── InternalServerError          5xx                         retryable
                └── OverloadedError          529, or 503 "overloaded"    retryable

Every :class:`ProviderError` carries the provider id, the HTTP status (if
any), the vendor's own error type, its request id, ``retryable`` and
``retry_after`` (seconds). :func:`status_error` is the one place a status
becomes a class; what a vendor's codes say beyond the status (a 400 that is
a bad key, a 429 that is an empty account) each adapter reads from its own
vendor's body and passes as an :data:`ErrorKind`. Messages never contain API keys: adapters build them from
vendor error bodies, which do not echo keys, and :func:`redact` scrubs
anything that looks like one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

from polyroute.types import Attempt, Excluded


class PolyrouteError(Exception):
    """Base of every error polyroute raises."""


class ConfigError(PolyrouteError):
    """A config file, key or value is wrong. The message names which."""


class BudgetBoundsError(ConfigError):
    """``budget optimize`` (or ``[budget.optimizer]``) bounds no allocation can meet: a
    negative total, min over max, or the providers' minimums over the total (CLI exit 2)."""


class PluginError(ConfigError):
    """An installed plugin (a ``polyroute.*`` entry point) cannot be loaded or is not what
    its group needs. The message names the package, its version and the entry point."""


class CredentialError(PolyrouteError):
    """The vault could not give a key: wrong passphrase, tampered file, unknown id."""


class WrongPassphraseError(CredentialError):
    """The master passphrase does not open the vault (its verifier does not decrypt)."""


class UnknownKeyError(CredentialError):
    """No gateway virtual key has this id (``polyroute keys list`` shows them)."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"no virtual key {key_id!r} (polyroute keys list shows them)")


class BudgetExceeded(PolyrouteError):
    """A budget refused the request: its worst-case cost does not fit what is left.

    ``requested_usd`` is ``None`` when the model has no price, so its cost
    cannot be bounded and no budget can admit it.
    """

    def __init__(
        self,
        *,
        scope: str,
        period: str,
        limit_usd: float,
        spent_usd: float,
        reserved_usd: float,
        requested_usd: float | None,
        model: str = "",
    ) -> None:
        self.scope = scope
        self.period = period
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.requested_usd = requested_usd
        self.model = model
        head = f"{period} budget for {scope} ({usd_text(limit_usd)}) "
        used = f"spent {usd_text(spent_usd)}, {usd_text(reserved_usd)} held by requests in flight"
        if requested_usd is None:
            why = f"cannot admit {model or 'this model'}: it has no price, so its cost has no bound"
        elif self.left_usd <= 0:
            why = f"is exhausted: {used}, this request needs up to {usd_text(requested_usd)}"
        else:
            why = (
                f"cannot admit this request: it needs up to {usd_text(requested_usd)}; "
                f"{usd_text(self.left_usd)} is left ({used})"
            )
        super().__init__(head + why)

    @property
    def left_usd(self) -> float:
        """What the budget could still admit when it refused (neither spent nor held)."""
        return max(0.0, round(self.limit_usd - self.spent_usd - self.reserved_usd, 9))  # nano-USD


class RateLimitedError(PolyrouteError):
    """A virtual key's own rate limit (``keys create --rpm/--tpm``) refused the request.

    Not a :class:`ProviderError`: no upstream was asked, and no other provider would
    admit it (the limit is the caller's). ``retry_after``: seconds until the window
    admits it; ``None`` when it never can (its worst case alone is over ``tpm``).
    A provider's own configured limit is :class:`ProviderLimitError` instead.
    """

    def __init__(
        self, *, scope: str, limit: str, per_minute: int, requested: int, retry_after: float | None
    ) -> None:
        self.scope = scope
        self.limit = limit
        self.per_minute = per_minute
        self.requested = requested
        self.retry_after = retry_after
        super().__init__(rate_refusal(scope, limit, per_minute, requested, retry_after))


def rate_refusal(
    scope: str, limit: str, per_minute: int, requested: int, retry_after: float | None
) -> str:
    """Why a rate limit refused a request (one wording for keys and providers)."""
    head = f"rate limit {limit} {per_minute:,} of {scope}"
    if retry_after is None:
        return (
            f"{head} can never admit this request: its worst case is {requested:,} tokens "
            "(prompt bound + max output); lower max_tokens"
        )
    what = "requests" if limit == "rpm" else f"tokens (this request holds up to {requested:,})"
    return f"{head} reached: no room for more {what} in the last 60 s, retry in {retry_after:.1f}s"


def usd_text(v: float) -> str:
    """Cents from a dollar up; below, three significant digits (``$0.00123``).

    Messages about money (budgets, routing exclusions) all read the same way.
    """
    if 1e-4 <= v < 1:  # the same as below, and faster: "g" drops the trailing zeros
        return f"${v:.3g}"
    if v >= 1 or v <= 0:
        return f"${v:,.2f}"
    decimals = 2 - math.floor(math.log10(v))
    return f"${v:.{decimals}f}".rstrip("0").rstrip(".")


class LedgerError(PolyrouteError):
    """The usage database could not be opened, migrated or written."""


class LedgerUnavailableError(LedgerError):
    """The usage database cannot be reached (a PostgreSQL server down or its connection
    lost): a request a budget governs is refused (503) until it is back."""


class GatewayError(PolyrouteError):
    """The gateway refuses a request before routing it: a bad body (400), a missing or
    bad key (401), a model the key may not use (403), an unknown model (404), a body too
    large (413). ``param`` names the offending field where there is one."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


class UnknownResponseError(GatewayError):
    """A stored response (``previous_response_id``, ``/v1/responses/{id}``) that does not
    exist or belongs to another virtual key: 404. With ``item``: an ``item_reference`` to no
    output item of such a response."""

    def __init__(
        self, response_id: str, *, param: str | None = None, item: bool = False, hint: str = ""
    ) -> None:
        what = "previous response" if param == "previous_response_id" else "response"
        what = "item" if item else what
        message = f"{what} with id {response_id!r} not found{hint}"
        super().__init__(message, status=404, param=param)
        self.code = "previous_response_not_found" if param else "response_not_found"
        self.code = "item_not_found" if item else self.code


class FusionError(PolyrouteError):
    """A fusion could not give a result."""


class NotEnoughAnswersError(FusionError):
    """Fewer than two panel members answered, so there is nothing to compare.

    ``responses`` lists every member with its outcome (empty when the panel
    could not even be formed, e.g. routing found a single eligible provider).
    """

    def __init__(self, message: str, responses: Sequence[Any] = ()) -> None:
        self.responses = tuple(responses)
        """The members' :class:`~polyroute.fusion.MemberResponse` values, in panel order."""
        super().__init__(message)


class FusionCostCapError(FusionError):
    """The panel's worst-case cost is over the caller's ``max_cost_usd``: refused before
    any call. ``worst_case_usd`` is ``None`` when a member is unpriced (no bound at all)."""

    def __init__(self, message: str, *, cap_usd: float, worst_case_usd: float | None) -> None:
        self.cap_usd = cap_usd
        self.worst_case_usd = worst_case_usd
        super().__init__(message)


class HookRefusal(PolyrouteError):
    """A hook refuses the request: raise it from ``pre_request`` with the reason the caller
    is told (a 400 at the gateway). ``hook`` is filled in with the refusing hook's name."""

    def __init__(self, reason: str, *, hook: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hook = hook

    def __str__(self) -> str:
        return f"refused by hook {self.hook}: {self.reason}" if self.hook else self.reason


class HookError(PolyrouteError):
    """A hook raised (anything but :class:`HookRefusal`) or did not return within
    ``[hooks] timeout_s``: the request fails rather than go on unhooked."""

    def __init__(self, hook: str, why: str) -> None:
        super().__init__(f"hook {hook} failed: {why}")
        self.hook = hook


class BenchError(PolyrouteError):
    """``polyroute bench`` cannot run as asked."""


class SuiteError(BenchError):
    """A benchmark suite is wrong: the message names the file, the case (or line) and the
    field (CLI exit 2)."""


class UnknownRunError(BenchError):
    """No benchmark run has this id (``--resume``, ``--compare``; CLI exit 2)."""


class ReportError(BenchError):
    """``bench --report DIR`` cannot be written: the ``report`` extra (matplotlib) is not
    installed, or DIR is not a writable directory (CLI exit 2)."""


class ProviderError(PolyrouteError):
    """A call to a vendor failed."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        vendor_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.provider = provider
        self.status = status
        self.vendor_type = vendor_type
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body
        if retryable is not None:
            self.retryable = retryable

    @property
    def type(self) -> str:
        """A stable snake_case name for this kind of failure (ledger, JSON output)."""
        return _snake(type(self).__name__.removesuffix("Error") or "provider")

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        status = f"HTTP {self.status} " if self.status is not None else ""
        vendor = f"[{self.vendor_type}] " if self.vendor_type else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}{status}{vendor}{self.message}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"status={self.status!r}, vendor_type={self.vendor_type!r}, "
            f"request_id={self.request_id!r}, retryable={self.retryable!r}, "
            f"retry_after={self.retry_after!r})"
        )


class APIConnectionError(ProviderError):
    retryable = True


class APITimeoutError(APIConnectionError):
    retryable = True


class PoolTimeoutError(APITimeoutError):
    """The provider's ``max_connections`` were all busy for the whole pool timeout."""

    retryable = True


class InvalidResponseError(ProviderError):
    """The vendor answered, but not in its own format (an HTML error page, truncated JSON)."""

    retryable = True


class ResponseTooLargeError(InvalidResponseError):
    """An answer (or a stream's total) over ``[gateway] max_response_mb``: reading stopped."""

    retryable = False


class UnsupportedError(ProviderError):
    """This vendor cannot do what the request asks; another provider may."""


class StreamInterruptedError(ProviderError):
    """A stream stopped before the vendor's end marker: the answer is truncated."""

    retryable = True


class RoutingError(ProviderError):
    """A routing outcome rather than one vendor's answer: no pair could be chosen, or none
    served. Under :class:`ProviderError` so that code catching that still catches these."""


class AllProvidersFailedError(RoutingError):
    """Every target of a routing decision failed; ``attempts`` lists each try, in order."""

    def __init__(
        self,
        attempts: Sequence[Attempt],
        errors: Sequence[ProviderError] = (),
        refusals: Sequence[BudgetExceeded] = (),
    ) -> None:
        self.attempts = list(attempts)
        self.errors = list(errors)
        self.refusals = list(refusals)
        """Budgets that refused some of the targets."""
        """The provider errors behind the attempts, in order (``last`` is the final one)."""
        listed = "; ".join(f"{a.provider}/{a.model}: {a.error}" for a in self.attempts)
        super().__init__(f"no provider could serve the request: {listed or 'no attempt made'}")

    @property
    def last(self) -> ProviderError | None:
        return self.errors[-1] if self.errors else None


class NoCandidateError(RoutingError):
    """Routing found no eligible (provider, model) pair; ``excluded`` says why, pair by pair."""

    def __init__(self, excluded: Sequence[Excluded] = (), *, detail: str = "") -> None:
        self.excluded = tuple(excluded)
        head = "no provider can serve this request" + (f" ({detail})" if detail else "")
        why = "; ".join(f"{e.provider}/{e.model}: {e.reason}" for e in self.excluded)
        super().__init__(f"{head}: {why}" if why else head)


class UnknownModelError(NoCandidateError):
    """A pin to a model that its provider's ``models`` does not list: refused before any call."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider_id, self.model = provider, model
        super().__init__(
            detail=f"provider {provider!r} does not list model {model!r} in its models; "
            'add it, or a pattern such as "*" to pass any name through'
        )


class InvalidModelError(RoutingError):
    """A model name that is not a plain model id (a path climbing with ``..``, ``?``,
    ``#``, control characters...): a name is data, so it is refused before any call."""

    def __init__(self, model: str, why: str) -> None:
        self.model = model
        super().__init__(f"model {model[:80]!r} is not a plain model id: {why}")


class APIStatusError(ProviderError):
    pass


class BadRequestError(APIStatusError):
    pass


class JSONTooDeepError(BadRequestError):
    """JSON nested deeper than polyroute parses (tool arguments or results): refused by the
    adapter before any call, as the vendor would refuse it."""


class ContextLengthError(BadRequestError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class RequestTimeoutError(APIStatusError):
    retryable = True


class ConflictError(APIStatusError):
    retryable = True


class RequestTooLargeError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    retryable = True


class QuotaExceededError(RateLimitError):
    """Out of credit or over a spend limit: a 429 that retrying will not fix."""

    retryable = False


class ProviderLimitError(RateLimitError):
    """The provider's configured ``rpm``/``tpm`` (ours, not the vendor's 429) is reached: no
    call was made. Not retried (``retry_after`` says when the window admits it): routing
    falls back to another provider, and a pin gets the 429."""

    retryable = False


class ContentFilterError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    retryable = True


class OverloadedError(InternalServerError):
    retryable = True


_BY_STATUS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    529: OverloadedError,
}

ErrorKind: TypeAlias = Literal[
    "authentication", "content_filter", "context_length", "overloaded", "quota"
]
"""A failure more precise than its status, as an adapter reads it from its vendor's codes."""

_BY_KIND: Mapping[ErrorKind, type[APIStatusError]] = {
    "authentication": AuthenticationError,
    "content_filter": ContentFilterError,
    "context_length": ContextLengthError,
    "overloaded": OverloadedError,
    "quota": QuotaExceededError,
}


def status_error(
    status: int,
    message: str,
    *,
    provider: str = "",
    kind: ErrorKind | None = None,
    vendor_type: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
    body: Any = None,
) -> APIStatusError:
    """Build the error for an HTTP error status: the one place this mapping lives.

    ``kind``: what the adapter read in the vendor's body, when it names a more precise
    class than the status does."""
    cls = (_BY_KIND[kind] if kind is not None else None) or _BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    retryable = None
    if cls is APIStatusError:  # an unusual 4xx: not worth retrying
        retryable = False
    return cls(
        message,
        provider=provider,
        status=status,
        vendor_type=vendor_type,
        request_id=request_id,
        retry_after=retry_after,
        body=body,
        retryable=retryable,
    )


_KEYLIKE = re.compile(
    r"(sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+[A-Za-z0-9._\-]{8,})"
)


def error_line(exc: BaseException) -> str:
    """``exc`` as one line, without the ``provider: `` prefix (for lists that name the
    provider already: attempts, panel members)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ProviderError) and exc.provider:
        text = text.removeprefix(f"{exc.provider}: ")
    return text or type(exc).__name__


def redact(text: str) -> str:
    """Replace anything shaped like an API key with ``***``."""
    return _KEYLIKE.sub("***", text)


def _snake(name: str) -> str:
    """``APIConnection`` -> ``api_connection``, ``RateLimit`` -> ``rate_limit``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
