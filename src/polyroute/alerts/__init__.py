"""Webhook alerts: ``[[alerts]]`` entries post the events they choose, as JSON or as a
Slack message, batched and retried off the request path (DESIGN.md §10).

::

    [[alerts]]
    url = "env:SLACK_WEBHOOK_URL"
    events = ["breaker_changed", "health_changed", "budget_alert", "budget_exceeded"]
    format = "slack"

Each entry has a bounded queue: an event that does not fit is dropped and counted
(``polyroute_alerts_dropped_total`` in the gateway's ``/metrics``), never waited for.
A webhook URL is a secret: logs and errors name it by scheme and host only.
"""

from polyroute.alerts._text import payload, redact_url, summary
from polyroute.alerts._webhook import Alerts, Webhook, posting, webhook_url

__all__ = ["Alerts", "Webhook", "payload", "posting", "redact_url", "summary", "webhook_url"]
