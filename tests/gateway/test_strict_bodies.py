"""Inbound bodies are strict (DESIGN §9): a field polyroute does not carry, at any depth, is
a 400 naming it in the caller's API shape, on /v1/chat/completions, /v1/messages and
/v1/messages/count_tokens alike. What the official SDKs send back of their own answers
still goes through. The sampling fields vendors have (presence and frequency penalties,
top_k, logit_bias) reach each vendor in its own words, or are refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from gateway.support import Gateway, fleet_gateway, sent

PINS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-sonnet-4-6",
    "google": "google/gemini-2.5-flash",
    "mistral": "mistral/mistral-small-latest",
    "ollama": "ollama/llama3.2:latest",
}
HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
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


def excluded(gateway: Gateway) -> dict[str, str]:
    return {e.provider: e.reason for e in gateway.pr.recent[-1].decision.excluded}


# -- unknown fields, in each API's error shape ----------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"messages": [{"role": "user", "content": "hi", "bogus": 1}]}, "messages.0.bogus"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}]},
            "messages.0.content.0.x",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "bogus": True}}]},
            "tools.0.function.bogus",
        ),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options.include_obfuscation"),
        ({"messages": [{"role": "user", "content": "hi", "refusal": "no"}]}, "messages.0.refusal"),
    ],
)
def test_chat_completions_refuses_a_field_by_its_path(
    gateway: Gateway, body: dict[str, Any], param: str
) -> None:
    with gateway.http() as http:
        r = http.post(
            "/v1/chat/completions", json={"model": PINS["openai"], "messages": HI, **body}
        )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"].startswith(f"{param}: ")


def test_the_openai_sdks_extra_body_is_refused_by_name(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model=PINS["openai"], messages=HI, extra_body={"bogus": 1})  # type: ignore[arg-type]
    assert exc.value.body == {
        "message": "bogus: not supported by polyroute",
        "type": "invalid_request_error",
        "param": "bogus",
        "code": None,
    }


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"container": "c1"}, "container"),
        ({"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
        ({"context_management": {"edits": []}}, "context_management"),
        ({"output_config": {"effort": "low"}}, "output_config.effort"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "z": 1}]}]},
            "messages.0.content.0.z",
        ),
        ({"tools": [{**WEATHER, "input_examples": [{"city": "Rome"}]}]}, "tools.0.input_examples"),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "a", "citations": [{"x": 1}]}],
                    },
                    {"role": "user", "content": "more"},
                ]
            },
            "messages.1.content.0.citations",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_messages_and_count_tokens_refuse_a_field_by_its_path(
    gateway: Gateway, body: dict[str, Any], where: str, path: str
) -> None:
    request = {"model": PINS["anthropic"], "max_tokens": 50, "messages": HI, **body}
    with gateway.http() as http:
        r = http.post(path, json=request)
    assert r.status_code == 400
    assert r.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": f"{where}: not supported by polyroute",
        },
    }


def test_the_anthropic_sdks_extra_body_is_refused_by_name(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(
            model=PINS["anthropic"], max_tokens=50, messages=HI, extra_body={"mcp_servers": []}
        )  # type: ignore[arg-type]
    assert "mcp_servers: not supported by polyroute" in str(exc.value)


# -- what the SDKs send back of their own answers ---------------------------------------


def test_an_openai_answer_goes_back_as_the_sdk_returned_it(
    oai: openai.OpenAI, gateway: Gateway
) -> None:
    gateway.fleet["openai"].script.reply = "first"
    first = oai.chat.completions.create(model=PINS["openai"], messages=HI)
    message = first.choices[0].message
    for again in (message, message.model_dump()):  # the SDK's model, and dumped whole
        oai.chat.completions.create(
            model=PINS["anthropic"],
            messages=[*HI, again, {"role": "user", "content": "more"}],  # type: ignore[list-item]
        )
        turns = sent(gateway, "anthropic")["messages"]
        assert turns[1]["role"] == "assistant" and "first" in str(turns[1]["content"])


def test_reasoning_content_sent_back_is_the_turns_reasoning(gateway: Gateway) -> None:
    # pydantic-ai sends an answer's reasoning_content back (empty on turns that had none)
    history = [
        *HI,
        {"role": "assistant", "content": "42", "reasoning_content": "thought"},
        {"role": "user", "content": "why?"},
        {"role": "assistant", "content": "so", "reasoning_content": ""},
        {"role": "user", "content": "ok"},
    ]
    with gateway.http() as http:
        for vendor in ("openai", "anthropic"):
            r = http.post("/v1/chat/completions", json={"model": PINS[vendor], "messages": history})
            assert r.status_code == 200, r.text
            # unsigned reasoning goes back to no upstream: the turns keep their text only
            assert "thought" not in str(sent(gateway, vendor))
            assert "42" in str(sent(gateway, vendor))


def test_a_refusal_sent_back_is_what_the_assistant_said(gateway: Gateway) -> None:
    history = [*HI, {"role": "assistant", "content": None, "refusal": "I can't."}, *HI]
    with gateway.http() as http:
        r = http.post("/v1/chat/completions", json={"model": PINS["google"], "messages": history})
        assert r.status_code == 200, r.text
        assert sent(gateway, "google")["contents"][1]["parts"] == [{"text": "I can't."}]
        both = [*HI, {"role": "assistant", "content": "x", "refusal": "y"}, *HI]
        r = http.post("/v1/chat/completions", json={"model": PINS["google"], "messages": both})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages.1.refusal"


def test_an_anthropic_tool_use_dumped_whole_goes_back(
    claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    gateway.fleet["anthropic"].script.reply = '{"city": "Rome"}'
    m = claude.messages.create(
        model=PINS["anthropic"],
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    [use] = [b for b in m.content if b.type == "tool_use"]
    dumped = {**use.model_dump(), "caller": {"type": "direct"}}  # caller: the model's own call
    assert dumped["toolset_name"] is None
    follow = [
        {"role": "user", "content": "Weather in Rome?"},
        {"role": "assistant", "content": [dumped]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "hot"}],
        },
    ]
    gateway.fleet["anthropic"].script.reply = None
    r = claude.messages.create(
        model=PINS["anthropic"],
        max_tokens=100,
        messages=follow,
        tools=[WEATHER],  # type: ignore[arg-type]
    )
    assert r.content[0].type == "text"
    assert sent(gateway, "anthropic")["messages"][1]["content"][0]["type"] == "tool_use"
    server = {**dumped, "caller": {"type": "code_execution_20250825", "tool_id": "t"}}
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(
            model=PINS["anthropic"],
            max_tokens=100,
            messages=[follow[0], {"role": "assistant", "content": [server]}, follow[2]],  # type: ignore[list-item]
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert "messages.1.content.0.caller.type" in str(exc.value)


def test_eager_input_streaming_reaches_anthropic_and_streams_elsewhere(
    claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    # the Vercel AI SDK's default on every tool of a stream
    tool = {**WEATHER, "eager_input_streaming": True}
    for vendor in ("anthropic", "openai"):
        with claude.messages.stream(
            model=PINS[vendor],
            max_tokens=50,
            messages=HI,
            tools=[tool],  # type: ignore[list-item]
        ) as stream:
            assert stream.get_final_message().content
    # the Anthropic call was first; the OpenAI upstream's last request has plain tools
    assert "eager_input_streaming" not in str(sent(gateway, "openai"))
    with claude.messages.stream(
        model=PINS["anthropic"],
        max_tokens=50,
        messages=HI,
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        stream.get_final_message()
    assert sent(gateway, "anthropic")["tools"][0]["eager_input_streaming"] is True


# -- the sampling fields vendors have --------------------------------------------------


def test_penalties_and_logit_bias_reach_openai(oai: openai.OpenAI, gateway: Gateway) -> None:
    oai.chat.completions.create(
        model=PINS["openai"],
        messages=HI,  # type: ignore[arg-type]
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100, "15": 2.5},
    )
    body = sent(gateway, "openai")
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -0.5)
    assert body["logit_bias"] == {"50256": -100, "15": 2.5}


@pytest.mark.parametrize(
    ("vendor", "where"),
    [
        ("mistral", lambda b: (b["presence_penalty"], b["frequency_penalty"])),
        (
            "google",
            lambda b: (
                b["generationConfig"]["presencePenalty"],
                b["generationConfig"]["frequencyPenalty"],
            ),
        ),
        ("ollama", lambda b: (b["options"]["presence_penalty"], b["options"]["frequency_penalty"])),
    ],
)
def test_penalties_reach_each_vendor_in_its_words(
    oai: openai.OpenAI, gateway: Gateway, vendor: str, where: Any
) -> None:
    r = oai.chat.completions.create(
        model=PINS[vendor],
        messages=HI,
        presence_penalty=1.5,
        frequency_penalty=0.25,  # type: ignore[arg-type]
    )
    assert r.choices[0].message.content
    assert where(sent(gateway, vendor)) == (1.5, 0.25)


@pytest.mark.parametrize(
    ("vendor", "where"),
    [
        ("anthropic", lambda b: b["top_k"]),
        ("google", lambda b: b["generationConfig"]["topK"]),
        ("ollama", lambda b: b["options"]["top_k"]),
    ],
)
def test_top_k_reaches_each_vendor_in_its_words(
    claude: anthropic.Anthropic, gateway: Gateway, vendor: str, where: Any
) -> None:
    # the anthropic SDK dropped top_k (API version 2026-10-21); the Vercel AI SDK sends it
    r = claude.messages.create(
        model=PINS[vendor],
        max_tokens=50,
        messages=HI,
        extra_body={"top_k": 40},  # type: ignore[arg-type]
    )
    assert r.content[0].type == "text"
    assert where(sent(gateway, vendor)) == 40


@pytest.mark.parametrize(
    ("vendor", "field", "value"),
    [
        ("anthropic", "presence_penalty", 0.5),
        ("anthropic", "frequency_penalty", 0.5),
        ("anthropic", "logit_bias", {"15": 1}),
        ("google", "logit_bias", {"15": 1}),
        ("mistral", "logit_bias", {"15": 1}),
        ("ollama", "logit_bias", {"15": 1}),
    ],
)
def test_a_pin_to_a_vendor_without_the_field_is_a_400_naming_it(
    oai: openai.OpenAI, vendor: str, field: str, value: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model=PINS[vendor], messages=HI, **{field: value})  # type: ignore[call-overload]
    assert f"{vendor} cannot take {field}" in str(exc.value)


@pytest.mark.parametrize("vendor", ["openai", "mistral"])
def test_top_k_pinned_where_there_is_none_is_a_400(
    claude: anthropic.Anthropic, vendor: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(
            model=PINS[vendor],
            max_tokens=50,
            messages=HI,
            extra_body={"top_k": 5},  # type: ignore[arg-type]
        )
    assert f"{vendor} cannot take top_k" in str(exc.value)


def test_auto_routes_past_vendors_without_the_field_and_says_why(
    oai: openai.OpenAI, claude: anthropic.Anthropic, gateway: Gateway
) -> None:
    r = oai.chat.completions.create(model="auto", messages=HI, presence_penalty=0.5)  # type: ignore[arg-type]
    assert r.choices[0].message.content
    why = excluded(gateway)
    assert why["anthropic"].startswith("anthropic cannot take presence_penalty")
    assert "openai" not in why and "google" not in why

    m = claude.messages.create(
        model="auto",
        max_tokens=50,
        messages=HI,
        extra_body={"top_k": 3},  # type: ignore[arg-type]
    )
    assert m.content[0].type == "text"
    why = excluded(gateway)
    assert why["openai"].startswith("openai cannot take top_k")
    assert why["mistral"].startswith("mistral cannot take top_k")
    assert "anthropic" not in why and "google" not in why and "ollama" not in why


def test_fusion_refuses_the_sampling_fields_by_name(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="fusion", messages=HI, presence_penalty=1)  # type: ignore[arg-type]
    assert exc.value.body["param"] == "presence_penalty"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"logit_bias": {"15": 101}}, "logit_bias.15"),
        ({"logit_bias": {"hello": 1}}, "logit_bias.hello"),
    ],
)
def test_out_of_range_sampling_fields_are_refused(
    gateway: Gateway, body: dict[str, Any], param: str
) -> None:
    with gateway.http() as http:
        r = http.post(
            "/v1/chat/completions", json={"model": PINS["openai"], "messages": HI, **body}
        )
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_top_k_below_one_is_refused(gateway: Gateway) -> None:
    with gateway.http() as http:
        r = http.post(
            "/v1/messages",
            json={"model": PINS["anthropic"], "max_tokens": 5, "messages": HI, "top_k": 0},
        )
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("top_k: ")


def test_a_participant_name_reaches_openai_types_only(gateway: Gateway) -> None:
    # LangGraph names each agent's turns; OpenAI takes a name on any message but a tool's
    history = [
        {"role": "user", "content": "hi", "name": "alice"},
        {"role": "assistant", "content": "hello", "name": "researcher"},
        {"role": "user", "content": "more"},
    ]
    with gateway.http() as http:
        for vendor in ("openai", "mistral", "anthropic"):
            r = http.post("/v1/chat/completions", json={"model": PINS[vendor], "messages": history})
            assert r.status_code == 200, r.text
    openai_turns = sent(gateway, "openai")["messages"]
    assert [t.get("name") for t in openai_turns] == ["alice", "researcher", None]
    assert "alice" not in str(sent(gateway, "mistral")) and "alice" not in str(
        sent(gateway, "anthropic")
    )


def test_embeddings_refuse_a_field_by_name(gateway: Gateway) -> None:
    with gateway.http() as http:
        r = http.post(
            "/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "hi", "truncate": "END"},
        )
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "truncate: not supported by polyroute"


# the SDK's own warning as it dumps its parsed message to send it back: the schema it
# serialises by types ``parsed`` as None (langchain-ai/langchain#35543 gives the cause)
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_a_parsed_answer_goes_back_as_the_sdk_returned_it(
    oai: openai.OpenAI, gateway: Gateway
) -> None:
    class City(pydantic.BaseModel):
        city: str

    gateway.fleet["openai"].script.reply = '{"city": "Rome"}'
    first = oai.chat.completions.parse(model=PINS["openai"], messages=HI, response_format=City)  # type: ignore[arg-type]
    message = first.choices[0].message
    assert message.parsed == City(city="Rome")
    gateway.fleet["openai"].script.reply = None
    oai.chat.completions.create(
        model=PINS["openai"],
        messages=[*HI, message, {"role": "user", "content": "more"}],  # type: ignore[list-item]
    )
    turn = sent(gateway, "openai")["messages"][1]
    assert turn["content"] == '{"city": "Rome"}' and "parsed" not in turn


def test_parsed_tool_arguments_go_back_with_their_arguments(gateway: Gateway) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a": 1}', "parsed_arguments": {"a": 1}},
    }
    history = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    with gateway.http() as http:
        r = http.post("/v1/chat/completions", json={"model": PINS["openai"], "messages": history})
    assert r.status_code == 200, r.text
    wire = sent(gateway, "openai")["messages"][1]["tool_calls"][0]["function"]
    assert wire == {"name": "f", "arguments": '{"a": 1}'}


def test_an_empty_citations_list_is_unset(gateway: Gateway) -> None:
    turn = {"role": "assistant", "content": [{"type": "text", "text": "a", "citations": []}]}
    body = {"model": PINS["anthropic"], "max_tokens": 5, "messages": [*HI, turn, *HI]}
    with gateway.http() as http:
        r = http.post("/v1/messages", json=body)
    assert r.status_code == 200, r.text
    assert "citations" not in str(sent(gateway, "anthropic"))
