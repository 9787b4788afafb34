"""Every refusal in the caller's own error shape, with DESIGN.md §9's statuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.support import Gateway, running
from polyroute.testing import Fleet

FORMATS = ("openai", "anthropic")
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
# the type each format gives each status
TYPES = {
    "openai": {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "invalid_request_error",
        413: "invalid_request_error",
        429: "budget_exceeded",
        502: "server_error",
        504: "timeout_error",
    },
    "anthropic": {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        502: "api_error",
        504: "timeout_error",
    },
}


def body(fmt: str, model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if fmt == "anthropic":
        out["max_tokens"] = 50
    return out | extra


def error(fmt: str, r: httpx.Response, status: int) -> dict[str, Any]:
    """The error object, after checking the status and the format's exact shape."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    if fmt == "openai":
        assert set(data) == {"error"}
        assert set(data["error"]) == {"message", "type", "param", "code"}
    else:
        assert data["type"] == "error" and set(data) == {"type", "error"}
        assert set(data["error"]) == {"type", "message"}
    err: dict[str, Any] = data["error"]
    if status != 429 or fmt == "anthropic":
        assert err["type"] == TYPES[fmt][status]
    return err


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.http() as c:
        yield c


@pytest.mark.parametrize("fmt", FORMATS)
def test_400_bad_json_missing_fields_wrong_types(fmt: str, http: httpx.Client) -> None:
    path = PATHS[fmt]
    r = http.post(path, content=b"{not json", headers={"content-type": "application/json"})
    assert "not valid JSON" in error(fmt, r, 400)["message"]
    r = http.post(path, json=[1, 2])
    assert error(fmt, r, 400)["message"] == "the body must be a JSON object"
    no_messages = body(fmt)
    del no_messages["messages"]
    r = http.post(path, json=no_messages)
    assert error(fmt, r, 400)["message"] == "messages: field required"
    r = http.post(path, json=body(fmt, temperature="hot"))
    assert error(fmt, r, 400)["message"].startswith("temperature: ")
    r = http.post(path, json=body(fmt, messages="hi"))
    assert error(fmt, r, 400)["message"].startswith("messages: ")
    r = http.post(path, json=body(fmt, messages=[{"role": "robot", "content": "hi"}]))
    assert error(fmt, r, 400)["message"].startswith("messages.0.role: ")


def test_400_openai_specifics(http: httpx.Client) -> None:
    path = PATHS["openai"]
    err = error("openai", http.post(path, json=body("openai", n=129)), 400)  # OpenAI's most: 128
    assert err["param"] == "n"
    tool = [{"role": "tool", "content": "x"}]
    err = error("openai", http.post(path, json=body("openai", messages=tool)), 400)
    assert err["param"] == "messages.0.tool_call_id"
    audio = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
    error("openai", http.post(path, json=body("openai", messages=audio)), 400)


def test_400_anthropic_specifics(http: httpx.Client) -> None:
    path = PATHS["anthropic"]
    no_max = body("anthropic")
    del no_max["max_tokens"]
    assert error("anthropic", http.post(path, json=no_max), 400)["message"] == (
        "max_tokens: field required"
    )
    bad_turn = [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]
    err = error("anthropic", http.post(path, json=body("anthropic", messages=bad_turn)), 400)
    assert "assistant turn takes text and tool_use" in err["message"]
    image = [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]
    err = error("anthropic", http.post(path, json=body("anthropic", messages=image)), 400)
    assert "needs data and media_type" in err["message"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("hints", "why"),
    [
        ({"priority": "fastest"}, "polyroute.priority: unknown strategy 'fastest'"),
        ({"priority": "os:system"}, "polyroute.priority: unknown strategy 'os:system'"),
        ({"complexity": "hard"}, "polyroute.complexity: "),
        ({"max_cost_usd": -1}, "polyroute.max_cost_usd: "),
        ({"require": ["telepathy"]}, "polyroute.require.0: "),
        ({"colour": "blue"}, "polyroute.colour: not supported by polyroute"),
    ],
)
def test_400_bad_routing_hints(fmt: str, hints: Any, why: str, http: httpx.Client) -> None:
    r = http.post(PATHS[fmt], json=body(fmt, polyroute=hints))
    assert error(fmt, r, 400)["message"].startswith(why)


@pytest.mark.parametrize("fmt", FORMATS)
def test_400_a_request_nothing_can_serve(fmt: str, http: httpx.Client) -> None:
    r = http.post(PATHS[fmt], json=body(fmt, "auto", polyroute={"max_cost_usd": 0}))
    message = error(fmt, r, 400)["message"]
    assert (
        message.startswith("no provider can serve this request") and "over the cost cap" in message
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("fusion:vote", "unknown fusion method 'vote'"),
        ("unknown-provider/gpt-4o", "unknown model 'unknown-provider/gpt-4o'"),
    ],
)
def test_404_unknown_model(fmt: str, model: str, why: str, http: httpx.Client) -> None:
    assert error(fmt, http.post(PATHS[fmt], json=body(fmt, model)), 404)["message"].startswith(why)


@pytest.mark.parametrize("fmt", FORMATS)
def test_404_a_pinned_model_the_upstream_does_not_have(
    fmt: str, http: httpx.Client, gateway: Gateway
) -> None:
    gateway.fleet["openai"].script.fail_next(1, 404)  # listed here, gone upstream
    r = http.post(PATHS[fmt], json=body(fmt, "openai/gpt-4o"))
    assert "model not found" in error(fmt, r, 404)["message"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_413_body_too_large_by_length_and_while_reading(fmt: str, fleet: Fleet) -> None:
    with running(fleet, max_body_bytes=2000) as gw, gw.http() as http:
        big = body(fmt, messages=[{"role": "user", "content": "x" * 5000}])
        assert (
            "over the gateway's limit of 2,000 bytes"
            in error(fmt, http.post(PATHS[fmt], json=big), 413)["message"]
        )

        def chunks() -> Iterator[bytes]:  # no content-length: refused while reading
            yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        error(fmt, http.post(PATHS[fmt], content=chunks()), 413)
        assert fleet["openai"].calls == 0
        ok = http.post(PATHS[fmt], json=body(fmt))
        assert ok.status_code == 200


@pytest.mark.parametrize("fmt", FORMATS)
def test_429_budget_exceeded(fmt: str, fleet: Fleet) -> None:
    with running(fleet, sections={"budget": {"daily_usd": 0.0}}) as gw, gw.http() as http:
        r = http.post(PATHS[fmt], json=body(fmt))
        err = error(fmt, r, 429)
        assert r.headers["x-should-retry"] == "false"  # a retry meets the same budget
        assert err["message"].startswith("daily budget for global ($0.00)")
        if fmt == "openai":
            assert (err["type"], err["code"]) == ("budget_exceeded", "budget_exceeded")
    assert fleet["openai"].calls == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_429_upstreams_rate_limited(fmt: str, http: httpx.Client, gateway: Gateway) -> None:
    for sim in gateway.fleet.sims.values():
        sim.script.fail_next(4, 429, retry_after=2)
    r = http.post(PATHS[fmt], json=body(fmt, "auto"))
    err = error(fmt, r, 429)
    assert r.headers["retry-after"] == "2"
    assert "x-should-retry" not in r.headers  # a rate limit passes: the SDK may retry
    if fmt == "openai":
        assert (err["type"], err["code"]) == ("rate_limit_error", "rate_limit_exceeded")


@pytest.mark.parametrize("fmt", FORMATS)
def test_502_every_upstream_failed_lists_the_attempts(
    fmt: str, http: httpx.Client, gateway: Gateway
) -> None:
    for sim in gateway.fleet.sims.values():
        sim.script.fail_always(503)
    r = http.post(PATHS[fmt], json=body(fmt, "auto"))
    err = error(fmt, r, 502)
    assert r.headers["x-should-retry"] == "false"  # the gateway already retried and fell back
    message = err["message"]
    assert message.startswith("no provider could serve the request: ")
    assert "openai/" in message and "anthropic/" in message and "HTTP 503" in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_504_every_upstream_timed_out(fmt: str, fleet: Fleet) -> None:
    for sim in fleet.sims.values():
        sim.script.hang_next(2.0, n=4)
    with running(fleet, provider_options={"timeout_s": 0.2}) as gw, gw.http() as http:
        err = error(fmt, http.post(PATHS[fmt], json=body(fmt, "auto")), 504)
        assert err["message"].startswith("no provider could serve the request: ")
        assert "no answer within 0.2s" in err["message"]


def test_the_sdks_raise_their_own_exceptions(gateway: Gateway) -> None:
    o = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as oe:
        o.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert oe.value.code == "model_not_found"
    a = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as ae:
        a.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert ae.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# -- failures after the first token ------------------------------------------------------


def test_openai_stream_failing_after_content_ends_with_an_error_frame(
    gateway: Gateway,
) -> None:
    gateway.fleet["anthropic"].error_mid_stream("overloaded_error", "Overloaded", after_chunks=2)
    stream_body = body("openai", "anthropic/claude-sonnet-4-6", stream=True)
    with gateway.http() as http, http.stream("POST", PATHS["openai"], json=stream_body) as r:
        assert r.status_code == 200
        frames = [line for line in r.iter_lines() if line]
    assert frames[-1].startswith('data: {"error":')
    assert '"type":"server_error"' in frames[-1] and "Overloaded" in frames[-1]
    assert "data: [DONE]" not in frames

    gateway.fleet["anthropic"].error_mid_stream("overloaded_error", "Overloaded", after_chunks=2)
    o = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="Overloaded"):
        for chunk in o.chat.completions.create(
            model="anthropic/claude-sonnet-4-6",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "Simulated anthropic "


def test_anthropic_stream_failing_after_content_ends_with_an_error_event(
    gateway: Gateway,
) -> None:
    gateway.fleet["openai"].script.cut_stream(after_chunks=2)
    stream_body = body("anthropic", "openai/gpt-4o-mini", stream=True)
    with gateway.http() as http, http.stream("POST", PATHS["anthropic"], json=stream_body) as r:
        assert r.status_code == 200
        frames = [line for line in r.iter_lines() if line]
    assert frames[-2:] == [
        "event: error",
        frames[-1],
    ] and frames[-1].startswith('data: {"type":"error","error":{"type":"api_error"')
    assert "event: message_stop" not in frames

    gateway.fleet["openai"].script.cut_stream(after_chunks=2, abort=True)
    a = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError, match="stream broken before its end"),
        a.messages.stream(
            model="openai/gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        for _ in stream.text_stream:
            pass


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stream_that_fails_before_its_first_token_is_a_plain_error(
    fmt: str, http: httpx.Client, gateway: Gateway
) -> None:
    for sim in gateway.fleet.sims.values():
        sim.script.fail_always(500)
    r = http.post(PATHS[fmt], json=body(fmt, "auto", stream=True))
    assert error(fmt, r, 502)["message"].startswith("no provider could serve the request")


def test_more_400s_of_each_format(http: httpx.Client) -> None:
    empty_user = [{"role": "user", "content": None}]
    err = error("openai", http.post(PATHS["openai"], json=body("openai", messages=empty_user)), 400)
    assert err["param"] == "messages.0.content"
    misplaced = [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f"}]}]
    err = error(
        "anthropic", http.post(PATHS["anthropic"], json=body("anthropic", messages=misplaced)), 400
    )
    assert "tool_use blocks belong in assistant turns" in err["message"]
    no_url = [{"role": "user", "content": [{"type": "image", "source": {"type": "url"}}]}]
    err = error(
        "anthropic", http.post(PATHS["anthropic"], json=body("anthropic", messages=no_url)), 400
    )
    assert err["message"] == "messages.0.content.0.source.url: field required"


def test_embeddings_errors(http: httpx.Client, gateway: Gateway) -> None:
    bad = {"model": "text-embedding-3-small", "input": [{"text": "a"}]}  # texts or token ids
    r = http.post("/v1/embeddings", json=bad)
    assert error("openai", r, 400)["message"].startswith("input")
    r = http.post("/v1/embeddings", json={"model": "no-embedder", "input": "a"})
    assert "unknown embeddings model 'no-embedder'" in error("openai", r, 404)["message"]
    gateway.fleet["openai"].script.fail_always(500)
    r = http.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "a"})
    assert "HTTP 500" in error("openai", r, 502)["message"]


@pytest.mark.parametrize(
    ("fmt", "field", "value"),
    [
        ("openai", "max_tokens", 2**31),
        ("openai", "max_completion_tokens", 10**30),
        ("openai", "seed", 2**64),
        ("openai", "polyroute.max_cost_usd", float("inf")),
        ("anthropic", "max_tokens", 10**30),
        ("anthropic", "polyroute.max_latency_ms", float("nan")),
    ],
)
def test_400_numbers_out_of_range_name_their_field(
    fmt: str, field: str, value: Any, http: httpx.Client, gateway: Gateway
) -> None:
    extra: dict[str, Any] = {field: value}
    if field.startswith("polyroute."):
        extra = {"polyroute": {field.removeprefix("polyroute."): value}}
    # as Infinity and NaN, which are not JSON but which pydantic reads
    raw = json.dumps(body(fmt, **extra)).encode()
    r = http.post(PATHS[fmt], content=raw, headers={"content-type": "application/json"})
    err = error(fmt, r, 400)
    assert err["message"].startswith(f"{field}: "), err
    if fmt == "openai":
        assert err["param"] == field
    assert gateway.fleet["openai"].calls == 0 and gateway.fleet["anthropic"].calls == 0


def test_embeddings_dimensions_are_bounded(http: httpx.Client, gateway: Gateway) -> None:
    model = "text-embedding-3-small"
    for dims in (0, 10**9):
        r = http.post("/v1/embeddings", json={"model": model, "input": "a", "dimensions": dims})
        err = error("openai", r, 400)
        assert err["param"] == "dimensions" and err["message"].startswith("dimensions: ")
    assert gateway.fleet["openai"].calls == 0
    r = http.post("/v1/embeddings", json={"model": model, "input": "a", "dimensions": 256})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 256


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_largest_values_vendors_take_pass(fmt: str, http: httpx.Client) -> None:
    extra: dict[str, Any] = {"max_tokens": 16_000, "temperature": 1, "top_p": 1}
    if fmt == "openai":
        extra |= {"seed": -(2**63), "max_completion_tokens": 16_384, "temperature": 2}
    r = http.post(PATHS[fmt], json=body(fmt, **extra))
    assert r.status_code == 200, r.text
