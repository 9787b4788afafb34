"""Step 7 point 5 end to end: the official SDKs send documents, image detail, parallel tool
call limits, failed tool results, several choices, log probabilities, the sampling and
tagging fields, and token-id embeddings through the gateway; each reaches every simulated
vendor as that vendor names it, translated, or is a 400 naming the field (DESIGN §9)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from gateway.support import Gateway, fleet_gateway, sent

PDF = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
FILE_PART = {
    "type": "file",
    "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "report.pdf"},
}
PINS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-sonnet-4-6",
    "google": "google/gemini-2.5-flash",
    "mistral": "mistral/mistral-small-latest",
    "ollama": "ollama/llama3.2:latest",
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with fleet_gateway(tmp_path_factory.mktemp("gateway")) as gw:
        yield gw


@pytest.fixture
def oai(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture
def claude(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        yield c


def refused(exc: pytest.ExceptionInfo[openai.BadRequestError], *words: str) -> None:
    assert exc.value.status_code == 400
    for word in words:
        assert word in str(exc.value)


# -- n > 1 ------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["openai", "mistral", "google"])
def test_n_gives_that_many_choices(oai: openai.OpenAI, gateway: Gateway, vendor: str) -> None:
    r = oai.chat.completions.create(
        model=PINS[vendor], messages=[{"role": "user", "content": "hi"}], n=2
    )
    assert [c.index for c in r.choices] == [0, 1]
    first, second = (c.message.content or "" for c in r.choices)
    assert second == f"{first} (choice 2)"
    body = sent(gateway, vendor)
    if vendor == "google":
        assert body["generationConfig"]["candidateCount"] == 2
    else:
        assert body["n"] == 2


@pytest.mark.parametrize("vendor", ["anthropic", "ollama"])
def test_n_is_refused_by_name_where_the_vendor_has_none(
    oai: openai.OpenAI, gateway: Gateway, vendor: str
) -> None:
    calls = gateway.fleet[vendor].calls
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(
            model=PINS[vendor], messages=[{"role": "user", "content": "hi"}], n=2
        )
    refused(exc, f"{vendor} cannot take n")
    assert gateway.fleet[vendor].calls == calls  # refused before any call


def test_n_does_not_stream(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(
            model=PINS["openai"], messages=[{"role": "user", "content": "hi"}], n=2, stream=True
        )
    assert exc.value.body is not None and exc.value.body["param"] == "n"  # type: ignore[index]


# -- documents --------------------------------------------------------------------------


def ask_pdf(oai: openai.OpenAI, model: str) -> Any:
    return oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "summarise"}, FILE_PART]}],
    )


def test_an_openai_file_part_reaches_each_vendor(oai: openai.OpenAI, gateway: Gateway) -> None:
    ask_pdf(oai, PINS["openai"])
    assert sent(gateway, "openai")["messages"][0]["content"][1] == FILE_PART
    ask_pdf(oai, PINS["anthropic"])
    block = sent(gateway, "anthropic")["messages"][0]["content"][1]
    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "report.pdf",
    }
    ask_pdf(oai, PINS["google"])
    part = sent(gateway, "google")["contents"][0]["parts"][1]
    assert part == {"inlineData": {"mimeType": "application/pdf", "data": PDF}}


def test_a_document_is_refused_by_name_where_the_vendor_reads_none(
    oai: openai.OpenAI,
) -> None:
    for vendor in ("ollama", "mistral"):
        with pytest.raises(openai.BadRequestError) as exc:
            ask_pdf(oai, PINS[vendor])
        refused(exc, f"{vendor} cannot take", "document")


def test_a_file_by_id_is_refused_by_name(oai: openai.OpenAI) -> None:
    part = {"type": "file", "file": {"file_id": "file-abc"}}
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(
            model=PINS["openai"], messages=[{"role": "user", "content": [part]}]
        )
    refused(exc, "messages.0.content.0.file.file_id")


def test_an_anthropic_document_block_reaches_openai_and_anthropic(
    claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    content: Any = [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
            "title": "report.pdf",
        },
        {"type": "text", "text": "summarise"},
    ]
    for model in (PINS["anthropic"], PINS["openai"]):
        r = claude.messages.create(
            model=model, max_tokens=100, messages=[{"role": "user", "content": content}]
        )
        assert r.content[0].type == "text"
    assert sent(gateway, "openai")["messages"][0]["content"][0] == FILE_PART
    assert sent(gateway, "anthropic")["messages"][0]["content"][0] == content[0]


# -- image detail -------------------------------------------------------------------------


def test_image_detail_reaches_openai_and_gemini(oai: openai.OpenAI, gateway: Gateway) -> None:
    image = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,aGk=", "detail": "low"},
    }
    for vendor in ("openai", "google"):
        oai.chat.completions.create(
            model=PINS[vendor], messages=[{"role": "user", "content": [image]}]
        )
    assert sent(gateway, "openai")["messages"][0]["content"][0] == image
    part = sent(gateway, "google")["contents"][0]["parts"][0]
    assert part["mediaResolution"] == {"level": "MEDIA_RESOLUTION_LOW"}


# -- parallel tool calls, failed tool results ---------------------------------------------


def test_parallel_tool_calls_both_ways(
    oai: openai.OpenAI, claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    oai.chat.completions.create(
        model=PINS["anthropic"],
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        parallel_tool_calls=False,
    )
    choice = sent(gateway, "anthropic")["tool_choice"]
    assert choice == {"type": "auto", "disable_parallel_tool_use": True}
    claude.messages.create(
        model=PINS["openai"],
        max_tokens=100,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    body = sent(gateway, "openai")
    assert body["parallel_tool_calls"] is False and body["tool_choice"] == "required"
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(
            model=PINS["google"],
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER],  # type: ignore[list-item]
            parallel_tool_calls=False,
        )
    refused(exc, "google cannot take parallel_tool_calls")


def test_a_failed_tool_result(claude: anthropic.Anthropic, gateway: Gateway) -> None:
    messages: Any = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "city required",
                    "is_error": True,
                }
            ],
        },
    ]
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    for vendor in ("anthropic", "openai", "google"):
        claude.messages.create(model=PINS[vendor], max_tokens=50, messages=messages, tools=tools)
    result = sent(gateway, "anthropic")["messages"][2]["content"][0]
    assert result["is_error"] is True and result["content"] == "city required"
    assert sent(gateway, "openai")["messages"][2]["content"] == "Error: city required"
    response = sent(gateway, "google")["contents"][2]["parts"][0]["functionResponse"]
    assert response["response"] == {"error": "city required"}


# -- log probabilities, seed, user, metadata, store, service tier ----------------------------


@pytest.mark.parametrize("vendor", ["openai", "mistral", "google", "ollama"])
def test_logprobs_come_back_in_openai_shape(
    oai: openai.OpenAI, gateway: Gateway, vendor: str
) -> None:
    r = oai.chat.completions.create(
        model=PINS[vendor],
        messages=[{"role": "user", "content": "hi"}],
        logprobs=True,
        top_logprobs=2,
    )
    logprobs = r.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    text = "".join(t.token for t in logprobs.content)
    assert text == r.choices[0].message.content
    assert [len(t.top_logprobs) for t in logprobs.content] == [2] * len(logprobs.content)


def test_logprobs_are_refused_by_anthropic(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(
            model=PINS["anthropic"], messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
    refused(exc, "anthropic cannot take logprobs")


def test_openai_carries_the_tagging_fields(oai: openai.OpenAI, gateway: Gateway) -> None:
    oai.chat.completions.create(
        model=PINS["openai"],
        messages=[{"role": "user", "content": "hi"}],
        seed=7,
        user="u-1",
        metadata={"app": "x"},
        store=True,
        service_tier="flex",
    )
    body = sent(gateway, "openai")
    assert (body["seed"], body["user"], body["metadata"]) == (7, "u-1", {"app": "x"})
    assert body["store"] is True and body["service_tier"] == "flex"


def test_anthropic_user_and_tier_reach_openai(
    claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    claude.messages.create(
        model=PINS["openai"],
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        metadata={"user_id": "u-2"},
        service_tier="standard_only",
    )
    body = sent(gateway, "openai")
    assert body["user"] == "u-2" and body["service_tier"] == "default"


@pytest.mark.parametrize(
    ("vendor", "field", "value"),
    [
        ("anthropic", "seed", 1),
        ("anthropic", "metadata", {"a": "b"}),
        ("google", "metadata", {"a": "b"}),
        ("mistral", "store", True),
        ("ollama", "metadata", {"a": "b"}),
        ("google", "store", True),
    ],
)
def test_fields_a_vendor_lacks_are_refused_by_name(
    oai: openai.OpenAI, vendor: str, field: str, value: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(
            model=PINS[vendor],
            messages=[{"role": "user", "content": "hi"}],
            **{field: value},
        )
    refused(exc, f"{vendor} cannot take {field}")


def test_claude_codes_user_id_does_not_shut_out_local_models(
    claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    for vendor in ("ollama", "google", "mistral"):
        r = claude.messages.create(
            model=PINS[vendor],
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            metadata={"user_id": "user_abc_account_session_1"},
        )
        assert r.content[0].type == "text"
        assert "user_abc" not in str(sent(gateway, vendor))


# -- embeddings: token ids ------------------------------------------------------------------


def test_token_id_embeddings_reach_openai(oai: openai.OpenAI, gateway: Gateway) -> None:
    many = oai.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(many.data) == 2
    assert sent(gateway, "openai")["input"] == [[1, 2, 3], [4, 5]]
    one = oai.embeddings.create(model="text-embedding-3-small", input=[7, 8, 9])
    assert len(one.data) == 1
    assert sent(gateway, "openai")["input"] == [[7, 8, 9]]


def test_token_id_embeddings_are_refused_by_name_elsewhere(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.embeddings.create(model="ollama/nomic-embed-text:latest", input=[[1, 2, 3]])
    refused(exc, "ollama cannot take input as token ids")


def test_fusion_refuses_the_fields_of_one_answer_by_name(oai: openai.OpenAI) -> None:
    for field, value in (("n", 2), ("seed", 1), ("logprobs", True)):
        with pytest.raises(openai.BadRequestError) as exc:
            oai.chat.completions.create(
                model="fusion", messages=[{"role": "user", "content": "hi"}], **{field: value}
            )
        assert exc.value.body["param"] == field  # type: ignore[index]


def test_responses_metadata_tags_the_response_and_stays_home(
    oai: openai.OpenAI, gateway: Gateway
) -> None:
    for vendor in ("anthropic", "openai"):
        r = oai.responses.create(model=PINS[vendor], input="hi", metadata={"k": "v"})
        assert r.metadata == {"k": "v"}
        assert "metadata" not in sent(gateway, vendor)
