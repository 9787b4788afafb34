"""Hosted tools on ``/v1/responses``: relayed to a pinned ``openai`` provider, with the
official SDK; metered with the tools' per-call fees; refused everywhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway.support import Gateway, running, start
from polyroute.gateway._relay import HOSTED_CALLS_CAP
from polyroute.testing import Fleet, OpenAISimulator
from polyroute.testing._openai_responses import CITED_URL
from polyroute.types import Usage

MODEL = "gpt-4.1-mini"
PIN = f"openai/{MODEL}"
SEARCH: Any = {"type": "web_search"}
WEB_SEARCH_FEE = 0.01  # OpenAI: $10 per 1k web search calls


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    db = tmp_path_factory.mktemp("gateway") / "ledger.db"
    with Fleet() as fleet:
        compatible = {
            "type": "openai-compatible",
            "base_url": fleet["openai"].base_url,
            "api_key": "env:POLYROUTE_SIM_KEY",
            "models": [MODEL],
        }
        storage = {"storage": {"url": f"sqlite:///{db}"}}
        gw = start(fleet, sections=storage, extra_providers={"compat": compatible})
        try:
            yield gw
        finally:
            gw.server.stop()


@pytest.fixture
def sim(gateway: Gateway) -> Iterator[OpenAISimulator]:
    sim = gateway.fleet["openai"]
    assert isinstance(sim, OpenAISimulator)
    try:
        yield sim
    finally:
        sim.script.reply = None


@pytest.fixture(scope="module")
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def tokens_cost(gateway: Gateway, usage: Any) -> float:
    u = Usage(
        usage.input_tokens,
        usage.output_tokens,
        cached_tokens=usage.input_tokens_details.cached_tokens,
        reasoning_tokens=usage.output_tokens_details.reasoning_tokens,
    )
    cost = gateway.pr.catalog.cost("openai", MODEL, u).usd
    assert cost is not None
    return cost


def spent(gateway: Gateway) -> float:
    report = asyncio.run(gateway.pr.usage(by="model"))
    return sum(r["cost_usd"] or 0.0 for r in report.as_dict()["rows"] if r["model"] == MODEL)


def failures(gateway: Gateway) -> int:
    report = asyncio.run(gateway.pr.usage(by="model"))
    return sum(r["failed"] for r in report.as_dict()["rows"] if r["model"] == MODEL)


def test_a_web_search_is_relayed_whole_and_its_answer_comes_back_as_openai_sent_it(
    sdk: openai.OpenAI, sim: OpenAISimulator, gateway: Gateway
) -> None:
    sim.script.reply = "Paris is the capital of France."
    raw = sdk.responses.with_raw_response.create(
        model=PIN,
        input="What is the capital of France?",
        tools=[SEARCH],
        include=["web_search_call.action.sources"],
        store=False,
        metadata={"trace": "t1"},
    )
    r = raw.parse()
    sent = sim.last_request()
    assert sent.path == "/v1/responses"
    assert sent.body["model"] == MODEL and sent.body["tools"] == [SEARCH]
    assert sent.body["include"] == ["web_search_call.action.sources"]  # carried as sent
    assert sent.body["store"] is False and sent.body["metadata"] == {"trace": "t1"}
    assert sent.body["max_tool_calls"] == HOSTED_CALLS_CAP  # the bound is sent upstream
    search, message = r.output
    assert search.type == "web_search_call" and search.status == "completed"
    assert message.type == "message"
    [part] = message.content
    assert part.type == "output_text"
    [cite] = part.annotations
    assert cite.type == "url_citation" and cite.url == CITED_URL
    assert r.output_text == "Paris is the capital of France."
    assert r.id.startswith("resp_") and r.max_tool_calls == HOSTED_CALLS_CAP
    assert raw.headers["x-polyroute-provider"] == "openai"
    assert r.usage is not None
    bill = tokens_cost(gateway, r.usage) + WEB_SEARCH_FEE
    assert float(raw.headers["x-polyroute-cost-usd"]) == pytest.approx(bill, abs=1e-9)


def test_the_callers_max_tool_calls_is_carried(sdk: openai.OpenAI, sim: OpenAISimulator) -> None:
    r = sdk.responses.create(model=PIN, input="hi", tools=[SEARCH], max_tool_calls=0)
    assert sim.last_request().body["max_tool_calls"] == 0
    assert [o.type for o in r.output] == ["message"]  # no search: no fee


def test_a_streamed_web_search_relays_every_event_and_the_ledger_bills_the_fee(
    sdk: openai.OpenAI, sim: OpenAISimulator, gateway: Gateway
) -> None:
    sim.script.reply = "It is sunny in Lisbon today."
    before = spent(gateway)
    with sdk.responses.stream(model=PIN, input="Weather in Lisbon?", tools=[SEARCH]) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert sim.last_request().body["stream"] is True
    searching = [
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
    ]
    assert [k for k in kinds if k.startswith("response.web_search_call")] == searching
    assert "response.output_text.annotation.added" in kinds
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [o.type for o in final.output] == ["web_search_call", "message"]
    assert final.output_text == "It is sunny in Lisbon today."
    assert final.usage is not None
    bill = tokens_cost(gateway, final.usage) + WEB_SEARCH_FEE
    assert spent(gateway) - before == pytest.approx(bill, abs=1e-9)


def test_the_stream_is_the_upstreams_bytes(gateway: Gateway, sim: OpenAISimulator) -> None:
    body = {"model": PIN, "input": "hi", "tools": [SEARCH], "stream": True}
    with gateway.http() as http:
        r = http.post("/v1/responses", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in r.text.split("\n\n") if f]
    assert all(f.startswith("event: ") and "\ndata: {" in f for f in frames)
    assert frames[-1].startswith("event: response.completed\n")


@pytest.mark.parametrize(
    ("model", "tool"),
    [
        (MODEL, SEARCH),  # a bare name routes
        ("auto", SEARCH),
        ("anthropic/claude-haiku-4-5", SEARCH),  # another vendor
        (f"compat/{MODEL}", SEARCH),  # an OpenAI-compatible server has no hosted tools
        (PIN, {"type": "code_interpreter", "container": {"type": "auto"}}),  # no price to meter
    ],
)
def test_hosted_tools_elsewhere_are_a_400_naming_the_tool(
    sdk: openai.OpenAI, gateway: Gateway, model: str, tool: Any
) -> None:
    calls = gateway.fleet["openai"].calls + gateway.fleet["anthropic"].calls
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model=model, input="hi", tools=[tool])
    assert f"'{tool['type']}'" in e.value.message
    assert e.value.param == "tools.0.type"
    if tool is SEARCH:
        assert "pin a provider of type openai" in e.value.message
    assert gateway.fleet["openai"].calls + gateway.fleet["anthropic"].calls == calls


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tool_calls": -1}, "max_tool_calls"),
        ({"max_tool_calls": "3"}, "max_tool_calls"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"polyroute": {"priority": "cost"}}, "polyroute"),
    ],
)
def test_bounds_and_hints_the_relay_cannot_take_are_a_400(
    sdk: openai.OpenAI, gateway: Gateway, extra: dict[str, Any], param: str
) -> None:
    calls = gateway.fleet["openai"].calls
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model=PIN, input="hi", tools=[SEARCH], extra_body=extra)
    assert e.value.param == param
    assert gateway.fleet["openai"].calls == calls


def test_an_upstream_refusal_comes_back_typed_and_a_transient_error_is_retried(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    sim.script.fail_next(status=400, message="Invalid vector store id")
    calls = sim.calls
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model=PIN, input="hi", tools=[SEARCH])
    assert "Invalid vector store id" in e.value.message
    assert sim.calls == calls + 1  # the caller's fault: not retried
    sim.script.fail_next(status=500)
    r = sdk.responses.create(model=PIN, input="hi", tools=[SEARCH])
    assert r.status == "completed" and sim.calls == calls + 3  # retried on the same target


def test_a_stream_that_fails_before_its_first_event_is_a_plain_error(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    sim.script.fail_next(status=400, message="Unknown vector store")
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model=PIN, input="hi", tools=[SEARCH], stream=True)
    assert "Unknown vector store" in e.value.message


def test_a_stream_cut_after_its_first_events_ends_with_an_error_event_and_is_recorded(
    gateway: Gateway, sim: OpenAISimulator
) -> None:
    failed = failures(gateway)
    sim.script.cut_stream(after_chunks=3)
    body = {"model": PIN, "input": "hi", "tools": [SEARCH], "stream": True}
    with gateway.http() as http:
        r = http.post("/v1/responses", json=body)
    frames = [f for f in r.text.split("\n\n") if f]
    assert frames[-1].startswith("event: error\n")
    assert f'"sequence_number":{len(frames) - 1}' in frames[-1]
    assert not any(f.startswith("event: response.completed") for f in frames)
    assert failures(gateway) == failed + 1


def test_a_relayed_response_is_not_stored_here(sdk: openai.OpenAI) -> None:
    r = sdk.responses.create(model=PIN, input="hi", tools=[SEARCH])
    with pytest.raises(openai.NotFoundError) as e:
        sdk.responses.retrieve(r.id)
    assert "kept by OpenAI, not here" in e.value.message
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(r.id)


def test_a_budget_too_small_for_the_worst_case_is_refused_before_any_call(
    fleet: Fleet,
) -> None:
    with running(fleet, sections={"budget": {"daily_usd": 1.0}}) as gw, gw.http() as http:
        sim = gw.fleet["openai"]
        body = {"model": PIN, "input": "hi", "tools": [SEARCH]}
        r = http.post("/v1/responses", json=body)
        assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
        assert sim.calls == 0
        # one search and no more: 2 passes of the window, within the budget
        r = http.post("/v1/responses", json={**body, "max_tool_calls": 1, "max_output_tokens": 50})
        assert r.status_code == 200, r.text
        assert sim.calls == 1


def test_the_catalog_prices_the_hosted_tools(gateway: Gateway) -> None:
    catalog = gateway.pr.catalog
    assert catalog.tool_fee("openai", "gpt-4.1", "web_search") == 0.01
    assert catalog.tool_fee("openai", "gpt-4.1", "web_search_preview") == 0.025
    assert catalog.tool_fee("openai", "gpt-5", "web_search_preview") == 0.01  # reasoning
    assert catalog.tool_fee("openai", "gpt-4.1", "file_search") == 0.0025
    assert catalog.tool_fee("openai", "gpt-4.1", "image_generation") is None


def test_an_in_stream_failure_is_relayed_and_recorded_as_failed(
    gateway: Gateway, sim: OpenAISimulator
) -> None:
    failed = failures(gateway)
    sim.stream_error = "server_error"
    try:
        body = {"model": PIN, "input": "hi", "tools": [SEARCH], "stream": True}
        with gateway.http() as http:
            r = http.post("/v1/responses", json=body)
    finally:
        sim.stream_error = None
    kinds = [f.split("\n", 1)[0] for f in r.text.split("\n\n") if f]
    assert kinds[-2:] == ["event: error", "event: response.failed"]  # OpenAI's own
    assert failures(gateway) == failed + 1


def test_an_upstream_that_keeps_failing_is_a_502_after_the_retries(
    sdk: openai.OpenAI, sim: OpenAISimulator
) -> None:
    calls = sim.calls
    sim.script.fail_always(503)
    try:
        with pytest.raises(openai.APIStatusError) as e:
            sdk.responses.create(model=PIN, input="hi", tools=[SEARCH])
    finally:
        sim.script.recover()
    assert e.value.status_code == 502 and "openai/gpt-4.1-mini" in e.value.message
    assert sim.calls > calls + 1  # retried on the one target, never another vendor


def test_a_key_that_may_not_use_the_model_is_403(fleet: Fleet) -> None:
    with running(fleet, admin_key="admin-secret", key_cache_s=0) as gw:
        _, secret = asyncio.run(gw.pr.ledger.create_key("team", models=["gpt-4o-mini"]))
        with gw.http(authorization=f"Bearer {secret}") as http:
            r = http.post("/v1/responses", json={"model": PIN, "input": "hi", "tools": [SEARCH]})
        assert r.status_code == 403 and gw.fleet["openai"].calls == 0


def test_a_keys_rate_limit_holds_for_relayed_calls_and_a_refusal_records_nothing(
    fleet: Fleet,
) -> None:
    with running(fleet, admin_key="admin-secret", key_cache_s=0) as gw:
        _, secret = asyncio.run(gw.pr.ledger.create_key("team", rpm=1))
        body = {"model": PIN, "input": "hi", "tools": [SEARCH]}
        with gw.http(authorization=f"Bearer {secret}") as http:
            assert http.post("/v1/responses", json=body).status_code == 200
            r = http.post("/v1/responses", json=body)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert gw.fleet["openai"].calls == 1
        report = asyncio.run(gw.pr.usage(by="model"))
        assert sum(row["requests"] for row in report.as_dict()["rows"]) == 1


def test_relayed_calls_are_told_to_the_event_hub(
    sdk: openai.OpenAI, sim: OpenAISimulator, gateway: Gateway
) -> None:
    seen: list[Any] = []
    stop = gateway.pr.meter.hub.subscribe(seen.append, "request_succeeded", "request_failed")
    try:
        sdk.responses.create(model=PIN, input="hi", tools=[SEARCH])
        sim.script.fail_next(status=400, message="No such store")
        with pytest.raises(openai.BadRequestError):
            sdk.responses.create(model=PIN, input="hi", tools=[SEARCH])
    finally:
        stop()
    ok, failed = seen
    assert (ok.kind, ok.provider, ok.model) == ("request_succeeded", "openai", MODEL)
    assert ok.cost_usd > WEB_SEARCH_FEE
    assert (failed.kind, failed.status, failed.error_type) == ("request_failed", 400, "bad_request")


def test_an_open_breaker_keeps_relayed_calls_away(fleet: Fleet) -> None:
    breaker = {"failure_threshold": 2, "reset_timeout_s": 60, "half_open_requests": 1}
    sections = {"router": {"circuit_breaker": breaker}}
    with running(fleet, sections=sections) as gw, gw.http() as http:
        sim = gw.fleet["openai"]
        sim.script.fail_always(500)
        body = {"model": PIN, "input": "hi", "tools": [SEARCH]}
        assert http.post("/v1/responses", json=body).status_code == 502
        assert gw.pr.breakers.get("openai").state == "open"
        calls = sim.calls
        r = http.post("/v1/responses", json=body)
        assert r.status_code == 502 and "circuit breaker open" in r.json()["error"]["message"]
        assert sim.calls == calls  # no call while open


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_that_is_not_openais_format_is_retried(
    gateway: Gateway, sim: OpenAISimulator, stream: bool
) -> None:
    calls = sim.calls
    sim.script.garbage_next()
    body = {"model": PIN, "input": "hi", "tools": [SEARCH], "stream": stream}
    with gateway.http() as http:
        r = http.post("/v1/responses", json=body)
    assert r.status_code == 200 and sim.calls == calls + 2
    assert "web_search_call" in r.text


def test_an_event_that_is_not_json_is_an_invalid_response() -> None:
    from polyroute.errors import InvalidResponseError
    from polyroute.gateway._relay import _loads

    with pytest.raises(InvalidResponseError) as e:
        _loads("{not json", "openai")
    assert e.value.provider == "openai"
