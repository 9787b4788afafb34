"""The official google-genai SDK parses everything the simulator sends: the simulator cannot drift."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from polyroute.testing.google import GoogleSimulator


@pytest.fixture
def sim() -> Iterator[GoogleSimulator]:
    s = GoogleSimulator(reply="Hello from the wire")
    with s:
        yield s


def make_sdk(sim: GoogleSimulator, api_version: str | None = None) -> genai.Client:
    # attempts=1: the SDK must not retry, so the simulator's fault counts stay exact
    options = types.HttpOptions(
        base_url=sim.base_url,
        api_version=api_version,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key="sim-key", http_options=options)


@pytest.fixture
def sdk(sim: GoogleSimulator) -> genai.Client:
    return make_sdk(sim)


# google-genai 3.x talks to /v1 by default; polyroute talks to /v1beta
@pytest.mark.parametrize("version", [None, "v1beta"])
def test_generate_content_parses(sim: GoogleSimulator, version: str | None) -> None:
    sim.script.cached_tokens = 1
    sdk = make_sdk(sim, version)  # keep a reference: a dropped Client closes its HTTP pool
    r = sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents="hi",
        config=types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=50),
    )
    assert r.text == "Hello from the wire"
    assert r.candidates and r.candidates[0].finish_reason == types.FinishReason.STOP
    usage = r.usage_metadata
    assert usage is not None and usage.candidates_token_count == 5
    assert usage.prompt_token_count == 3 and usage.cached_content_token_count == 1
    assert usage.total_token_count == 8
    assert r.response_id and r.model_version == "gemini-2.5-flash"
    assert sim.last_request().headers["x-goog-api-key"] == "sim-key"


def test_stream_with_usage_parses(sdk: genai.Client) -> None:
    chunks = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert "".join(c.text or "" for c in chunks) == "Hello from the wire"
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count == 6
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks[:-1])


def test_max_tokens_and_forced_function_call_parse(sdk: genai.Client) -> None:
    r = sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents="hi",
        config=types.GenerateContentConfig(max_output_tokens=2),
    )
    assert r.candidates and r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])
    r = sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents="hi",
        config=types.GenerateContentConfig(
            tools=[tool],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode=types.FunctionCallingConfigMode.ANY
                )
            ),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    assert r.function_calls and r.function_calls[0].name == "lookup"
    assert r.candidates and r.candidates[0].content and r.candidates[0].content.parts
    assert r.candidates[0].content.parts[0].thought_signature


def test_models_list_pages(sim: GoogleSimulator, sdk: genai.Client) -> None:
    names = [m.name for m in sdk.models.list(config={"page_size": 3})]
    assert names == [f"models/{m}" for m in sim.models]
    assert sim.calls == 2  # two pages: nextPageToken was followed


def test_embeddings_parse(sdk: genai.Client) -> None:
    e = sdk.models.embed_content(
        model="gemini-embedding-001",
        contents=["a", "b"],
        config=types.EmbedContentConfig(output_dimensionality=4),
    )
    assert e.embeddings and len(e.embeddings) == 2
    assert all(v.values and len(v.values) == 4 for v in e.embeddings)


@pytest.mark.parametrize(
    ("status", "exc", "code"),
    [
        (400, errors.ClientError, "INVALID_ARGUMENT"),
        (401, errors.ClientError, "UNAUTHENTICATED"),
        (403, errors.ClientError, "PERMISSION_DENIED"),
        (404, errors.ClientError, "NOT_FOUND"),
        (408, errors.ClientError, "DEADLINE_EXCEEDED"),
        (409, errors.ClientError, "ABORTED"),
        (413, errors.ClientError, "INVALID_ARGUMENT"),
        (422, errors.ClientError, "INVALID_ARGUMENT"),
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, errors.ServerError, "INTERNAL"),
        (502, errors.ServerError, "UNAVAILABLE"),
        (503, errors.ServerError, "UNAVAILABLE"),
    ],
)
def test_error_bodies_parse(
    sim: GoogleSimulator, sdk: genai.Client, status: int, exc: type, code: str
) -> None:
    sim.script.fail_next(1, status, message="simulated failure")
    with pytest.raises(exc) as info:
        sdk.models.generate_content(model="gemini-2.5-flash", contents="hi")
    err = info.value
    assert isinstance(err, errors.APIError) and err.code == status
    assert err.status == code and err.message == "simulated failure"
    assert sim.calls == 1  # no SDK retry


def test_rate_limit_retry_info_and_stream_errors_parse(
    sim: GoogleSimulator, sdk: genai.Client
) -> None:
    sim.script.fail_next(1, 429, retry_after=12)
    with pytest.raises(errors.ClientError) as info:
        list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert info.value.code == 429
    details = info.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"} in details
    sim.script.fail_next(1, 500)
    with pytest.raises(errors.ServerError):
        sdk.models.embed_content(model="gemini-embedding-001", contents=["a"])


def test_wrong_key_is_api_key_invalid(sim: GoogleSimulator) -> None:
    bad = genai.Client(
        api_key="wrong",
        http_options=types.HttpOptions(
            base_url=sim.base_url, retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )
    with pytest.raises(errors.ClientError) as info:
        bad.models.generate_content(model="gemini-2.5-flash", contents="hi")
    err = info.value
    assert err.code == 400 and err.status == "INVALID_ARGUMENT"
    assert err.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_cut_stream_surfaces_in_sdk(sim: GoogleSimulator, sdk: genai.Client) -> None:
    sim.script.cut_stream(after_chunks=1, abort=True)
    with pytest.raises(httpx2.TransportError):  # the SDK lets the transport's error through
        list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
