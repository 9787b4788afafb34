"""What tracing costs a request when on, and what it costs when off.

Run: ./dev python bench/telemetry.py
Off, the client builds the plain executor and meter: no tracing code is on the request
path, so there is nothing to time. On, each request adds the span work measured here,
sequentially after a warm-up: the request span and one attempt span made as the traced
layer makes them (attributes of a request with its sampling fields, the routing decision,
the answer's usage and cost; the request span current while the attempt starts), ended
and handed to a batch processor whose exporter drops them (exporting happens in the SDK's
background thread, off the request). Also: what importing ``polyroute.telemetry`` (with
OpenTelemetry's SDK and OTLP exporter) adds to a process that already imported the client
and the gateway, paid once, only by a process that turns tracing on.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from time import perf_counter

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from polyroute.router.decision import Decision
from polyroute.telemetry import Telemetry
from polyroute.telemetry._spans import answered, request_attributes
from polyroute.types import ChatRequest, Message, Target, Usage

N = 20_000
REQUEST = ChatRequest(
    "", (Message.user("hi"),), max_tokens=200, temperature=0.3, top_p=0.9, stop=("END",)
)
DECISION = Decision(
    "balanced",
    "openai",
    "gpt-4o-mini",
    "best balanced score 0.81 (cost 0.9, quality 0.7, latency 0.8)",
    0.00012,
    fallbacks=(Target("anthropic", "claude-haiku-4-5"),),
)
USAGE = Usage(120, 48, cached_tokens=64)


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def one_request(t: Telemetry) -> None:
    attrs = request_attributes(REQUEST, stream=False)
    with t.request("chat", DECISION, attrs, "vk_1") as span:
        call = {**request_attributes(REQUEST, stream=False), "gen_ai.request.model": "gpt-4o-mini"}
        with t.attempt("chat", "openai", "openai", call) as attempt:
            answered(
                attempt,
                model="gpt-4o-mini-2024-07-18",
                response_id="chatcmpl-1",
                finish_reason="stop",
                usage=USAGE,
                cost_usd=0.0000468,
            )
        span.set_attributes(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.system": "openai",
                "polyroute.provider": "openai",
                "polyroute.fallback": False,
                "polyroute.attempts": 1,
            }
        )
        answered(
            span,
            model="gpt-4o-mini-2024-07-18",
            response_id="chatcmpl-1",
            finish_reason="stop",
            usage=USAGE,
            cost_usd=0.0000468,
        )


def main() -> None:
    t = Telemetry.exporting(Drop())
    for _ in range(2_000):
        one_request(t)
    samples = []
    for _ in range(N):
        t0 = perf_counter()
        one_request(t)
        samples.append(perf_counter() - t0)
    t.shutdown()
    samples.sort()
    p50, p99 = samples[N // 2], samples[int(N * 0.99)]
    print("tracing off: the plain executor and meter, no tracing code on the request path")
    print(f"tracing on, request + attempt span   p50 {p50 * 1e6:7.1f} µs   p99 {p99 * 1e6:7.1f} µs")

    code = (
        "import time; import polyroute.client, polyroute.gateway; t = time.perf_counter(); "
        "import polyroute.telemetry; print(time.perf_counter() - t)"
    )
    import_s = float(subprocess.check_output([sys.executable, "-c", code], text=True))
    print(
        f"import polyroute.telemetry           {import_s * 1e3:7.1f} ms "
        "(over the client and gateway's; once, only when tracing)"
    )


if __name__ == "__main__":
    main()
