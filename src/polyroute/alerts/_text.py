"""What a webhook is sent: JSON events or a Slack message, and URLs fit for a log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from polyroute.hub import (
    BreakerChanged,
    BudgetAlert,
    BudgetChanged,
    BudgetExceededEvent,
    Fallback,
    HealthChanged,
    HubEvent,
    RequestFailed,
    RequestSucceeded,
    RoutingDecision,
    UsageRecorded,
    event_dict,
)

Format = Literal["json", "slack"]


def redact_url(url: str) -> str:
    """``url`` with nothing secret left: scheme, host and port only, the rest (userinfo,
    path such as Slack's ``/services/T../B../XXXX``, query, fragment) as ``/***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    where = f"{parts.scheme or '?'}://{host}" + (f":{port}" if port else "")
    rest = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
    return where + ("/***" if rest else "/")


def _usd(v: float | None) -> str:
    return "none" if v is None else f"${v:,.2f}"


def summary(event: HubEvent) -> str:
    """``event`` in one readable line."""
    match event:
        case BreakerChanged():
            there = " (another replica)" if event.remote else ""
            line = f"circuit breaker of {event.provider}: {event.previous} -> {event.state}{there}"
            if event.state == "open":
                line += (
                    f" after {event.consecutive_failures} failures,"
                    f" retry in {event.retry_in_s:.0f}s"
                )
            return line
        case HealthChanged():
            there = " (another replica's probe)" if event.remote else ""
            why = f": {event.why}" if event.why else ""
            return f"{event.provider} is {event.state} (was {event.previous}){there}{why}"
        case Fallback():
            status = f" {event.status}" if event.status is not None else ""
            return (
                f"fallback {event.from_provider}/{event.from_model} -> "
                f"{event.to_provider}/{event.to_model} after {event.error_type}{status}: "
                f"{event.message}"
            )
        case BudgetAlert():
            return (
                f"budget {event.scope}: {event.percent:g}% of the {event.period} limit "
                f"({_usd(event.spent_usd)} of {_usd(event.limit_usd)}, {event.period_key})"
            )
        case BudgetExceededEvent():
            return (
                f"budget {event.scope} refused a call to {event.provider}/{event.model}: "
                f"{event.period} limit {_usd(event.limit_usd)}, spent {_usd(event.spent_usd)}"
            )
        case BudgetChanged():
            why = f" ({event.reason})" if event.reason else ""
            return (
                f"budget {event.scope}: {event.period} limit {_usd(event.previous_usd)} -> "
                f"{_usd(event.limit_usd)}{why}"
            )
        case RoutingDecision():
            d = event.decision
            return f"routed to {d.provider}/{d.model} ({d.strategy}): {d.reasoning}"
        case RequestSucceeded():
            return f"{event.provider}/{event.model} answered in {event.latency_ms:.0f} ms"
        case RequestFailed():
            return (
                f"{event.provider}/{event.model} failed ({event.error_type}) "
                f"after {event.latency_ms:.0f} ms: {event.message}"
            )
        case UsageRecorded():
            r = event.record
            cost = "unpriced" if r.cost_usd is None else f"${r.cost_usd:.6f}"
            return (
                f"usage {r.provider}/{r.model}: {r.prompt_tokens}+{r.completion_tokens} "
                f"tokens, {cost}, {r.status}"
            )


def _slack_escaped(text: str) -> str:
    # Slack's mrkdwn reads these three as markup
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(events: Sequence[HubEvent], fmt: Format) -> bytes:
    """The body of one POST: ``{"events": [...]}`` (each as :func:`~polyroute.hub.event_dict`)
    or, for Slack's incoming webhooks, ``{"text": ...}`` with a line per event."""
    body: dict[str, Any]
    if fmt == "slack":
        body = {"text": "\n".join(f"polyroute: {_slack_escaped(summary(e))}" for e in events)}
    else:
        body = {"events": [event_dict(e) for e in events]}
    return json.dumps(body, separators=(",", ":"), default=str).encode()
