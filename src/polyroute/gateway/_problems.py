"""Every error a gateway request can end in, as a :class:`Problem`: the one place a
polyroute error becomes an HTTP status (DESIGN.md §9).

- 400: the request itself (bad body; every upstream refused it as invalid;
  nothing can serve what it asks, e.g. a capability no model has, or a cost cap;
  a hook refused it, with its reason)
- 401/403/404/413: the gateway's own refusals (:class:`GatewayError`)
- 429: a budget refused it, the virtual key's rate limit did, or every upstream
  rate-limited it (a provider's own configured limit included)
- 502: every upstream failed, or none is available (attempts or exclusions listed)
- 504: every upstream timed out
- 503: the ledger's database server cannot be reached (a budget governs the request)
- 500: the gateway's own configuration or ledger is broken, or a hook failed (named)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from polyroute.errors import (
    AllProvidersFailedError,
    APITimeoutError,
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    CredentialError,
    FusionCostCapError,
    FusionError,
    GatewayError,
    HookError,
    HookRefusal,
    InvalidModelError,
    LedgerUnavailableError,
    NoCandidateError,
    NotFoundError,
    PolyrouteError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    RateLimitError,
    RequestTimeoutError,
    UnknownResponseError,
    UnprocessableEntityError,
    UnsupportedError,
)
from polyroute.gateway._wire import Problem, ProblemKind

log = logging.getLogger("polyroute.gateway")

_GATEWAY: Mapping[int, tuple[ProblemKind, str | None]] = {
    400: ("invalid_request", None),
    401: ("authentication", "invalid_api_key"),
    403: ("permission", "model_not_allowed"),
    404: ("not_found", "model_not_found"),
    413: ("too_large", "request_too_large"),
}

_TIMEOUTS = (APITimeoutError, RequestTimeoutError)
# upstream refusals of the request itself (another upstream would refuse it too)
_CALLERS_FAULT = (BadRequestError, UnprocessableEntityError, UnsupportedError)


def problem_of(exc: PolyrouteError) -> Problem:
    """The status and message ``exc`` gives the caller."""
    if isinstance(exc, UnknownResponseError):
        return Problem(404, "not_found", str(exc), exc.param, exc.code)
    if isinstance(exc, GatewayError):
        kind, code = _GATEWAY.get(exc.status, ("invalid_request", None))
        return Problem(exc.status, kind, str(exc), exc.param, code)
    if isinstance(exc, BudgetExceeded):
        return Problem(429, "budget", str(exc), code="budget_exceeded")
    if isinstance(exc, RateLimitedError):
        if exc.retry_after is None:  # its worst case alone is over the key's tpm
            return Problem(400, "invalid_request", str(exc), "max_tokens", "exceeds_tpm")
        return Problem(
            429, "rate_limit", str(exc), code="rate_limit_exceeded", retry_after=exc.retry_after
        )
    if isinstance(exc, HookRefusal):
        return Problem(400, "invalid_request", str(exc), code="refused_by_hook")
    if isinstance(exc, HookError):  # names the hook and what went wrong, never its data
        log.error("%s", exc)
        return Problem(500, "internal", str(exc), code="hook_failed")
    if isinstance(exc, FusionCostCapError):
        return Problem(400, "invalid_request", str(exc), "polyroute.max_cost_usd", "cost_cap")
    if isinstance(exc, FusionError):
        return Problem(502, "upstream", str(exc), code="fusion_failed")
    if isinstance(exc, InvalidModelError):
        return Problem(400, "invalid_request", str(exc), "model", "invalid_model")
    if isinstance(exc, NoCandidateError):
        return _no_candidate(exc)
    if isinstance(exc, AllProvidersFailedError):
        return _all_failed(exc)
    if isinstance(exc, ProviderError):
        return _all_failed_with([exc], str(exc))
    if isinstance(exc, ConfigError | CredentialError):
        return _internal(exc, "the gateway's configuration")
    if isinstance(exc, LedgerUnavailableError):
        log.error("the ledger's database cannot be reached: %s", exc)
        message = "the gateway cannot reach its usage database (its log says why); retry shortly"
        return Problem(503, "internal", message, code="ledger_unavailable", retry_after=2.0)
    return _internal(exc, "the gateway")


def _internal(exc: PolyrouteError, what: str) -> Problem:
    """The detail goes to the operator's log, not to callers: it may name storage paths or
    settings, and an unauthenticated caller can reach it (a key check needs the ledger)."""
    log.error("%s failed a request: %s", what, exc)
    return Problem(500, "internal", f"{what} failed this request (the gateway's log says why)")


def _no_candidate(exc: NoCandidateError) -> Problem:
    kinds = {e.kind for e in exc.excluded}
    message = str(exc)
    if not kinds:  # nothing in scope at all
        return Problem(404, "not_found", message, "model", "model_not_found")
    if kinds == {"over_budget"}:
        return Problem(429, "budget", message, code="budget_exceeded")
    if kinds & {"unavailable", "over_budget"}:  # it could be served, but not now
        return Problem(502, "upstream", message, code="no_provider_available")
    return Problem(400, "invalid_request", message, code="no_provider_can_serve")


def _all_failed(exc: AllProvidersFailedError) -> Problem:
    return _all_failed_with(exc.errors, str(exc))


def _all_failed_with(errors: Sequence[ProviderError], message: str) -> Problem:
    if errors and all(isinstance(e, _TIMEOUTS) for e in errors):
        return Problem(504, "timeout", message, code="upstream_timeout")
    limited = [e for e in errors if isinstance(e, RateLimitError)]
    if (
        errors
        and len(limited) == len(errors)
        and not any(isinstance(e, QuotaExceededError) for e in limited)
    ):
        waits = [e.retry_after for e in limited if e.retry_after is not None]
        return Problem(
            429,
            "rate_limit",
            message,
            code="rate_limit_exceeded",
            retry_after=min(waits, default=None),
        )
    if errors and all(isinstance(e, NotFoundError) for e in errors):
        return Problem(404, "not_found", message, "model", "model_not_found")
    if errors and all(isinstance(e, _CALLERS_FAULT) for e in errors):
        return Problem(400, "invalid_request", message, code="rejected_by_upstream")
    return Problem(502, "upstream", message, code="upstream_failed")
