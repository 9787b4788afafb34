"""Traces over OpenTelemetry, with its GenAI semantic conventions (``[telemetry]``).

Imported only when tracing is on (it needs the ``polyroute[otel]`` extra): with
``[telemetry] otlp_endpoint`` set, or a :class:`Telemetry` given to
``Polyroute(config, telemetry=...)``, the client is built from the traced layer
(:class:`TracedExecutor`, :class:`TracedMeter`, :class:`TracedFuser`) and the gateway
adds :class:`TracedHTTP`; otherwise none of this module is loaded and the request path
runs no tracing code.

Spans: the gateway's HTTP request (server span), under it a request span
(``polyroute chat``, ``polyroute embeddings``: the routing decision, what served it,
usage and cost) or a fusion span (``polyroute fusion``), and under those one client
span per attempt (``chat <model>``: provider, attempt index, fallback, and usage, cost
or ``error.type``).
"""

from polyroute.telemetry._http import TracedHTTP
from polyroute.telemetry._layer import TracedExecutor, TracedFuser, TracedMeter, TracedStream
from polyroute.telemetry._spans import Telemetry, traces_url

__all__ = [
    "Telemetry",
    "TracedExecutor",
    "TracedFuser",
    "TracedHTTP",
    "TracedMeter",
    "TracedStream",
    "traces_url",
]
