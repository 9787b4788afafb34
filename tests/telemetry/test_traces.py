"""Traces: the spans of requests, attempts, streams, fusions and gateway calls, read from the
SDK's in-memory exporter (given through ``Polyroute(config, telemetry=...)``), and the
OTLP/HTTP export that ``[telemetry] otlp_endpoint`` turns on, to a loopback collector."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import Receive, Scope, Send

from gateway.test_serve import wait_healthy
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import (
    AllProvidersFailedError,
    BudgetExceeded,
    ConfigError,
    NotEnoughAnswersError,
)
from polyroute.gateway import create_app
from polyroute.router.executor import Executor
from polyroute.telemetry import Telemetry, TracedExecutor, TracedHTTP, traces_url
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, EmbeddingRequest, Message
from servers.ports import free_port


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply="traced answer") as f:
        yield f


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def config(fleet: Fleet, **sections: Any) -> Config:
    settings = fleet.settings(storage={"url": "sqlite://"}, **sections)
    return Config(validate(settings, "test"), "test", fleet.env())


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def pr(fleet: Fleet, exporter: InMemorySpanExporter) -> AsyncIterator[Polyroute]:
    telemetry = Telemetry.exporting(exporter, batch=False)
    p = Polyroute(config(fleet, router={"retries_per_provider": 0}), telemetry=telemetry)
    p.executor.sleep = no_sleep
    yield p
    await p.aclose()


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(name)]


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    assert span.attributes is not None
    return span.attributes


def child_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None and parent.context is not None
    return child.parent.span_id == parent.context.span_id


REQUEST = ChatRequest(
    "", (Message.user("weather?"),), max_tokens=50, temperature=0.3, top_p=0.9, stop=("END",)
)


async def test_a_served_request_is_a_span_with_one_attempt_span_under_it(
    fleet: Fleet, pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    fleet["openai"].script.cached_tokens = 1
    fleet["openai"].script.reasoning_tokens = 3
    answer = await pr.send(REQUEST, provider="openai", model="gpt-4o", virtual_key="vk_1")
    [request] = spans(exporter, "polyroute chat")
    [attempt] = spans(exporter, "chat gpt-4o")
    assert child_of(attempt, request)
    assert (request.kind, attempt.kind) == (SpanKind.INTERNAL, SpanKind.CLIENT)
    assert attempt.status.status_code == StatusCode.UNSET
    a = attrs(attempt)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.temperature"]) == (50, 0.3)
    assert (a["gen_ai.request.top_p"], a["gen_ai.request.stop_sequences"]) == (0.9, ("END",))
    assert a["gen_ai.request.stream"] is False
    assert a["gen_ai.response.model"] == answer.model
    assert a["gen_ai.response.id"] and a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens > 0
    assert a["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens > 0
    assert a["gen_ai.usage.cache_read.input_tokens"] == answer.usage.cached_tokens == 1
    assert a["gen_ai.usage.reasoning.output_tokens"] == answer.usage.reasoning_tokens == 3
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert a["polyroute.cost_usd"] == answer.cost_usd
    assert (a["polyroute.provider"], a["polyroute.attempt.index"]) == ("openai", 0)
    assert a["polyroute.fallback"] is False
    r = attrs(request)
    assert r["polyroute.routing.strategy"] == answer.decision.strategy
    assert r["polyroute.routing.reasoning"] == answer.decision.reasoning
    assert r["gen_ai.request.model"] == "gpt-4o"
    assert r["gen_ai.provider.name"] == "openai"
    assert r["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert r["polyroute.cost_usd"] == answer.cost_usd
    assert (r["polyroute.attempts"], r["polyroute.fallback"]) == (1, False)
    assert r["polyroute.virtual_key"] == "vk_1"
    assert "error.type" not in r and "error.type" not in a


async def test_a_fallback_is_two_attempt_spans_the_first_with_its_error_type(
    fleet: Fleet, pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    decision = pr.route("hi")
    fleet[decision.provider].script.fail_always(500)
    answer = await pr.complete("hi")
    assert answer.provider != decision.provider
    [request] = spans(exporter, "polyroute chat")
    first, second = sorted(spans(exporter, "chat "), key=lambda s: s.start_time or 0)
    assert child_of(first, request) and child_of(second, request)
    f, s = attrs(first), attrs(second)
    assert (f["polyroute.provider"], f["polyroute.attempt.index"]) == (decision.provider, 0)
    assert f["error.type"] == "InternalServerError"
    assert first.status.status_code == StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in f
    assert (s["polyroute.provider"], s["polyroute.attempt.index"]) == (answer.provider, 1)
    assert s["polyroute.fallback"] is True and "error.type" not in s
    r = attrs(request)
    assert (r["polyroute.attempts"], r["polyroute.fallback"]) == (2, True)
    assert r["polyroute.provider"] == answer.provider
    assert request.status.status_code == StatusCode.UNSET


async def test_a_request_nobody_served_ends_in_error_with_every_attempt(
    fleet: Fleet, pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    for sim in ("openai", "anthropic"):
        fleet[sim].script.fail_always(503)
    with pytest.raises(AllProvidersFailedError) as info:
        await pr.complete("hi")
    [request] = spans(exporter, "polyroute chat")
    assert attrs(request)["error.type"] == "AllProvidersFailedError"
    assert request.status.status_code == StatusCode.ERROR
    attempts = sorted(spans(exporter, "chat "), key=lambda s: s.start_time or 0)
    assert [attrs(a)["polyroute.provider"] for a in attempts] == [
        a.provider for a in info.value.attempts
    ]
    assert [attrs(a)["polyroute.attempt.index"] for a in attempts] == list(range(len(attempts)))
    assert {attrs(a)["error.type"] for a in attempts} == {"InternalServerError"}


async def test_a_budget_refusal_is_the_request_spans_error_and_each_refused_attempts(
    pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    await pr.ledger.set_budget("global", daily_usd=0.0)
    with pytest.raises(BudgetExceeded):
        await pr.send(REQUEST, provider="openai")
    [request] = spans(exporter, "polyroute chat")
    assert attrs(request)["error.type"] == "BudgetExceeded"
    assert request.status.status_code == StatusCode.ERROR
    [attempt] = spans(exporter, "chat ")
    assert attrs(attempt)["error.type"] == "BudgetExceeded"
    assert "budget" in (attempt.status.description or "")
    assert "gen_ai.response.id" not in attrs(attempt)


async def test_a_streams_span_ends_with_the_stream_and_carries_its_first_chunk(
    pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    stream = pr.stream("hi", provider="anthropic", max_tokens=40)
    events = stream.__aiter__()
    await anext(events)
    assert spans(exporter, "polyroute chat") == []  # still streaming: not ended
    rest = [e async for e in events]
    assert rest[-1].kind == "end"
    assert stream.answer is not None
    [request] = spans(exporter, "polyroute chat")
    [attempt] = spans(exporter, "chat claude")
    assert child_of(attempt, request)
    for span in (request, attempt):
        a = attrs(span)
        assert a["gen_ai.request.stream"] is True
        assert a["gen_ai.request.max_tokens"] == 40
        assert a["gen_ai.response.time_to_first_chunk"] > 0
        assert [e.name for e in span.events] == ["gen_ai.first_chunk"]
        assert a["gen_ai.usage.output_tokens"] == stream.answer.usage.completion_tokens > 0
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert a["gen_ai.response.model"].startswith("claude")
        assert a["gen_ai.response.id"]
        assert a["gen_ai.provider.name"] == "anthropic"
        assert a["polyroute.cost_usd"] == stream.cost_usd
        assert "error.type" not in a


async def test_a_stream_left_before_its_end_is_a_cancelled_span(
    pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    stream = pr.stream("hi", provider="openai")
    events = stream.__aiter__()
    await anext(events)
    await events.aclose()
    [request] = spans(exporter, "polyroute chat")
    [attempt] = spans(exporter, "chat ")
    assert attrs(request)["error.type"] == attrs(attempt)["error.type"] == "cancelled"


async def test_a_failed_stream_falls_back_inside_one_request_span(
    fleet: Fleet, pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    decision = pr.route("hi")
    fleet[decision.provider].script.fail_next(1, 500)
    stream = pr.stream("hi")
    assert [e async for e in stream][-1].kind == "end"
    [request] = spans(exporter, "polyroute chat")
    attempts = sorted(spans(exporter, "chat "), key=lambda s: s.start_time or 0)
    assert [attrs(a).get("error.type") for a in attempts] == ["InternalServerError", None]
    assert all(child_of(a, request) for a in attempts)
    assert attrs(request)["polyroute.fallback"] is True


async def test_embeddings_and_fusion_are_spans_over_their_calls(
    pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    done = await pr.embed(EmbeddingRequest("text-embedding-3-small", ("a", "b")))
    [request] = spans(exporter, "polyroute embeddings")
    [attempt] = spans(exporter, "embeddings text-embedding-3-small")
    assert child_of(attempt, request)
    assert attrs(attempt)["gen_ai.operation.name"] == "embeddings"
    assert attrs(attempt)["gen_ai.usage.input_tokens"] == done.response.usage.prompt_tokens

    result = await pr.fuse("2+2?", providers=["openai", "anthropic"])
    [fusion] = spans(exporter, "polyroute fusion")
    members = [s for s in spans(exporter, "chat ") if child_of(s, fusion)]
    assert sorted(attrs(m)["polyroute.provider"] for m in members) == ["anthropic", "openai"]
    f = attrs(fusion)
    assert f["polyroute.fusion.method"] == "majority"
    assert [m.split("/")[0] for m in f["polyroute.fusion.members"]] == ["openai", "anthropic"]
    assert (f["polyroute.fusion.agreement"], f["polyroute.fusion.answers"]) == (
        result.agreement,
        2,
    )


async def test_a_failed_fusion_and_a_failed_embedding_end_their_spans_in_error(
    fleet: Fleet, pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    for sim in ("openai", "anthropic"):
        fleet[sim].script.fail_always(500)
    with pytest.raises(NotEnoughAnswersError):
        await pr.fuse("2+2?", providers=["openai", "anthropic"])
    [fusion] = spans(exporter, "polyroute fusion")
    assert attrs(fusion)["error.type"] == "NotEnoughAnswersError"
    assert fusion.status.status_code == StatusCode.ERROR
    members = [s for s in spans(exporter, "chat ") if child_of(s, fusion)]
    assert [attrs(m)["error.type"] for m in members] == ["InternalServerError"] * 2

    with pytest.raises(AllProvidersFailedError):
        await pr.embed(EmbeddingRequest("text-embedding-3-small", ("a",)))
    [request] = spans(exporter, "polyroute embeddings")
    assert attrs(request)["error.type"] == "AllProvidersFailedError"
    [attempt] = spans(exporter, "embeddings ")
    assert child_of(attempt, request) and attrs(attempt)["error.type"] == "InternalServerError"


async def test_the_server_span_of_a_5xx_or_an_exception_is_an_error(
    exporter: InMemorySpanExporter,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    traced = TracedHTTP(app, Telemetry.exporting(exporter, batch=False), ["/busy", "/boom"])
    transport = httpx.ASGITransport(app=traced, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/busy")).status_code == 503
        assert (await client.get("/boom")).status_code == 500
    [busy] = spans(exporter, "GET /busy")
    [boom] = spans(exporter, "GET /boom")
    assert (attrs(busy)["error.type"], busy.status.status_code) == ("503", StatusCode.ERROR)
    assert (attrs(boom)["error.type"], boom.status.status_code) == (
        "RuntimeError",
        StatusCode.ERROR,
    )
    assert boom.status.description == "boom"


async def test_a_gateway_call_is_a_server_span_continuing_the_callers_trace(
    pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    app = create_app(pr, admin_key=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        assert r.status_code == 200
        assert (await client.get("/v1/responses/nope")).status_code == 404
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    [server] = spans(exporter, "POST")
    [missing] = spans(exporter, "GET")
    assert (server.name, missing.name) == ("POST /v1/chat/completions", "GET")
    assert server.kind == SpanKind.SERVER
    assert server.context is not None and f"{server.context.trace_id:032x}" == trace_id
    s = attrs(server)
    assert (s["http.request.method"], s["http.route"]) == ("POST", "/v1/chat/completions")
    assert s["http.response.status_code"] == 200
    assert attrs(missing)["http.response.status_code"] == 404
    assert "http.route" not in attrs(missing)
    [request] = spans(exporter, "polyroute chat")
    [attempt] = spans(exporter, "chat gpt-4o")
    assert child_of(request, server) and child_of(attempt, request)


async def test_a_gateway_stream_is_traced_until_its_last_byte(
    pr: Polyroute, exporter: InMemorySpanExporter
) -> None:
    app = create_app(pr, admin_key=None)
    transport = httpx.ASGITransport(app=app)
    body = {
        "model": "anthropic/claude-haiku-4-5",
        "max_tokens": 30,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        r = await client.post("/v1/messages", json=body)
        assert r.status_code == 200 and "message_stop" in r.text
    [server] = spans(exporter, "POST /v1/messages")
    [request] = spans(exporter, "polyroute chat")
    [attempt] = spans(exporter, "chat claude-haiku-4-5")
    assert child_of(request, server) and child_of(attempt, request)
    assert server.end_time and request.end_time and server.end_time >= request.end_time
    assert attrs(request)["gen_ai.request.stream"] is True
    assert attrs(request)["gen_ai.response.time_to_first_chunk"] > 0
    assert attrs(server)["http.response.status_code"] == 200


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


async def test_otlp_endpoint_exports_the_spans_to_the_collector_over_http(
    fleet: Fleet,
    collector: tuple[str, list[tuple[str, str, bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    url, received = collector
    telemetry = {"otlp_endpoint": url, "service_name": "gw-test"}
    pr = Polyroute(config(fleet, telemetry=telemetry))
    assert isinstance(pr.executor, TracedExecutor)
    await pr.send(REQUEST, provider="openai")
    await pr.aclose()  # shuts the exporter down: what is pending is posted
    assert received, "the collector got nothing"
    paths = {path for path, _, _ in received}
    assert paths == {"/v1/traces"}
    assert {ctype for _, ctype, _ in received} == {"application/x-protobuf"}
    names: list[str] = []
    services: set[str] = set()
    for _, _, body in received:
        export = ExportTraceServiceRequest.FromString(body)
        for rs in export.resource_spans:
            services |= {
                a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
            }
            names += [s.name for ss in rs.scope_spans for s in ss.spans]
    assert services == {"gw-test"}
    assert sorted(names) == ["chat gpt-4o-mini", "polyroute chat"]


def test_serve_exports_each_requests_spans_and_flushes_them_on_sigterm(
    fleet: Fleet, collector: tuple[str, list[tuple[str, str, bytes]]], tmp_path: Path
) -> None:
    url, received = collector
    config = tmp_path / "polyroute.toml"
    config.write_text(
        fleet.toml()
        + f'\n[storage]\nurl = "sqlite:///{tmp_path / "l.db"}"\n\n[health]\ninterval_s = 0\n'
        + f'\n[telemetry]\notlp_endpoint = "{url}"\nservice_name = "gw-serve"\n'
    )
    port = free_port()
    env = {**os.environ, **fleet.env(), "POLYROUTE_HOME": str(tmp_path / "home")}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    command = [sys.executable, "-m", "polyroute", "--config", str(config), "serve"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        gateway = f"http://127.0.0.1:{port}"
        wait_healthy(gateway, proc)
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        r = httpx.post(
            gateway + "/v1/chat/completions",
            json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
            timeout=30,
        )
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    spans_by_name = {}
    for _, _, body in received:
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            for ss in rs.scope_spans:
                spans_by_name.update({s.name: s for s in ss.spans})
    names = {"POST /v1/chat/completions", "polyroute chat", "chat gpt-4o-mini"}
    assert names <= set(spans_by_name)
    assert {spans_by_name[n].trace_id.hex() for n in names} == {trace_id}
    assert "GET /health" not in spans_by_name  # probes are not traced


def test_traces_url_appends_the_otlp_path_once() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://c/otlp/v1/traces") == "https://c/otlp/v1/traces"


def test_an_otlp_endpoint_that_is_not_an_http_url_is_refused_by_name(fleet: Fleet) -> None:
    with pytest.raises(ConfigError, match=r"telemetry.otlp_endpoint.*http://"):
        config(fleet, telemetry={"otlp_endpoint": "collector:4318"})
    with pytest.raises(ConfigError, match=r"telemetry.nope"):
        config(fleet, telemetry={"nope": 1})


async def test_off_by_default_the_plain_executor_runs(fleet: Fleet) -> None:
    pr = Polyroute(config(fleet))
    assert pr.telemetry is None
    assert type(pr.executor) is Executor
    await pr.aclose()


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_polyroute_loads_no_opentelemetry() -> None:
    done = _run(
        "import sys, polyroute\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_off_a_client_and_its_gateway_load_no_tracing() -> None:
    """(redis-py, imported by the shared state, loads OpenTelemetry's metrics API when it is
    installed: what is checked here is that nothing of tracing is.)"""
    done = _run(
        "import sys\n"
        "from polyroute import Polyroute\n"
        "from polyroute.config import Config, validate\n"
        "from polyroute.gateway import create_app\n"
        "pr = Polyroute(Config(validate({'storage': {'url': 'sqlite://'}}, 't'), 't', {}))\n"
        "create_app(pr, admin_key=None)\n"
        "names = ('polyroute.telemetry', 'opentelemetry.sdk.trace', 'opentelemetry.exporter')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_endpoint_without_the_otel_extra_is_a_config_error_naming_it() -> None:
    done = _run(
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"
        "from polyroute import Polyroute\n"
        "from polyroute.config import Config, validate\n"
        "from polyroute.errors import ConfigError\n"
        "s = {'storage': {'url': 'sqlite://'}, 'telemetry': {'otlp_endpoint': 'http://c:4318'}}\n"
        "try:\n"
        "    Polyroute(Config(validate(s, 't'), 't', {}))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "t: telemetry.otlp_endpoint needs OpenTelemetry" in done.stdout
    assert "polyroute[otel]" in done.stdout
