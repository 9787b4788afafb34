"""The Responses API (``/v1/responses``) with the official openai SDK, over simulated
OpenAI and Anthropic upstreams: JSON, the typed event stream, tool loops, stored
conversations, and every way a request is refused."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.support import ADMIN, Gateway, start
from polyroute.gateway._responses_in import parse
from polyroute.ledger._responses import _recent, new_response_id
from polyroute.testing import Fleet
from polyroute.testing.anthropic import sign
from polyroute.types import DocumentPart, ImagePart, JsonSchema, Reasoning, ThinkingPart, Tool

OPENAI_REPLY = "Simulated openai reply from gpt-4o-mini."
CLAUDE_REPLY = "Simulated anthropic reply from claude-sonnet-4-6."
MODELS = {"openai": ("gpt-4o-mini", OPENAI_REPLY), "anthropic": ("claude-sonnet-4-6", CLAUDE_REPLY)}
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": None,
}


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_create_answers_with_a_response_object(
    sdk: openai.OpenAI, gateway: Gateway, vendor: str
) -> None:
    model, reply = MODELS[vendor]
    raw = sdk.responses.with_raw_response.create(
        model=model, input="hi", instructions="be brief", max_output_tokens=50
    )
    r = raw.parse()
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.output_text == reply and r.model == model
    [item] = r.output
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert r.usage is not None and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert r.instructions == "be brief" and r.max_output_tokens == 50 and r.store is True
    assert raw.headers["x-polyroute-provider"] == vendor
    assert float(raw.headers["x-polyroute-cost-usd"]) > 0
    sent = gateway.fleet[vendor].last_request().body
    if vendor == "anthropic":
        assert sent["system"] == "be brief" and sent["max_tokens"] == 50
    else:
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}


def test_usage_carries_cached_tokens(sdk: openai.OpenAI, gateway: Gateway) -> None:
    gateway.fleet["openai"].script.cached_tokens = 2
    r = sdk.responses.create(model="gpt-4o-mini", input="a longer question, to cache some")
    assert r.usage is not None and r.usage.input_tokens_details.cached_tokens == 2


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_a_stored_conversation_continues_on_any_provider(
    sdk: openai.OpenAI, gateway: Gateway, vendor: str
) -> None:
    first = sdk.responses.create(model="gpt-4o-mini", input="hi", instructions="be brief")
    model, reply = MODELS[vendor]
    with sdk.responses.stream(model=model, input="again", previous_response_id=first.id) as s:
        second = s.get_final_response()
    assert second.output_text == reply and second.previous_response_id == first.id
    sent = gateway.fleet[vendor].last_request().body
    turns = [(m["role"], m["content"]) for m in sent["messages"] if m["role"] != "system"]
    assert turns == [("user", "hi"), ("assistant", OPENAI_REPLY), ("user", "again")]
    assert "be brief" not in json.dumps(sent)  # instructions are not carried over, as OpenAI's
    third = sdk.responses.create(model=model, input="and again", previous_response_id=second.id)
    sent = gateway.fleet[vendor].last_request().body
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert third.output_text == reply


def test_the_stream_is_the_typed_event_sequence(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model="claude-sonnet-4-6", input="hi", stream=True))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 1
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == CLAUDE_REPLY
    assert done.response.usage is not None and done.response.usage.output_tokens == 13
    assert len({e.response.id for e in events if hasattr(e, "response")}) == 1


def test_a_function_tool_loop_streamed_with_previous_response_id(
    sdk: openai.OpenAI, gateway: Gateway
) -> None:
    claude = gateway.fleet["anthropic"]
    claude.script.reply = '{"city": "Paris"}'
    forced: Any = {"type": "function", "name": "get_weather"}
    with sdk.responses.stream(
        model="claude-sonnet-4-6", input="Weather in Paris?", tools=[WEATHER], tool_choice=forced
    ) as s:
        kinds = [e.type for e in s]
        first = s.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id and call.id and call.id.startswith("fc_")
    assert first.tools[0].name == "get_weather"  # type: ignore[union-attr]
    sent = claude.last_request().body
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}

    claude.script.reply = "Sunny in Paris."
    output: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    with sdk.responses.stream(
        model="claude-sonnet-4-6", input=[output], tools=[WEATHER], previous_response_id=first.id
    ) as s:
        second = s.get_final_response()
    assert second.output_text == "Sunny in Paris."
    turns = claude.last_request().body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    [use] = [b for b in turns[1]["content"] if b["type"] == "tool_use"]
    assert use["id"] == call.call_id and use["input"] == {"city": "Paris"}
    [result] = turns[2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call.call_id


def test_a_json_tool_call_answer(sdk: openai.OpenAI, gateway: Gateway) -> None:
    gateway.fleet["anthropic"].script.reply = '{"city": "Oslo"}'
    r = sdk.responses.create(
        model="claude-sonnet-4-6",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}],
        tools=[WEATHER],
        tool_choice="required",
    )
    [call] = r.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Oslo"}


def test_retrieve_and_delete(sdk: openai.OpenAI, gateway: Gateway) -> None:
    r = sdk.responses.create(model="gpt-4o-mini", input="hi")
    got = sdk.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump()
    with gateway.http() as http:
        deleted = http.delete(f"/v1/responses/{r.id}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": r.id, "object": "response", "deleted": True}
        assert http.delete(f"/v1/responses/{r.id}").status_code == 404
    with pytest.raises(openai.NotFoundError) as e:
        sdk.responses.retrieve(r.id)
    assert e.value.code == "response_not_found"


def test_store_false_keeps_nothing(sdk: openai.OpenAI) -> None:
    r = sdk.responses.create(model="gpt-4o-mini", input="hi", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(r.id)


def test_an_unknown_previous_response_is_404(sdk: openai.OpenAI, gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        sdk.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_nope")
    assert e.value.code == "previous_response_not_found"
    assert e.value.param == "previous_response_id"  # type: ignore[attr-defined]
    assert gateway.fleet["openai"].calls == 0


@pytest.mark.parametrize(
    ("tool", "named"),
    [
        ({"type": "web_search"}, "web_search"),
        ({"type": "file_search", "vector_store_ids": ["vs_1"]}, "file_search"),
        ({"type": "computer_use_preview"}, "computer_use_preview"),
    ],
)
def test_hosted_tools_are_a_400_naming_them(sdk: openai.OpenAI, tool: Any, named: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model="gpt-4o-mini", input="hi", tools=[tool])
    assert f"'{named}'" in e.value.message and "hosted" in e.value.message
    assert e.value.param == "tools.0.type"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"frobnicate": 1}, "frobnicate"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"text": {"format": {"type": "text"}, "verbosity": "low"}}, "text.verbosity"),
        ({"reasoning": {"effort": "xhigh"}}, "reasoning.effort"),
    ],
)
def test_fields_not_carried_are_a_400_naming_them(
    sdk: openai.OpenAI, gateway: Gateway, extra: dict[str, Any], named: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model="gpt-4o-mini", input="hi", extra_body=extra)
    assert named in e.value.message
    assert e.value.param == named  # type: ignore[attr-defined]
    assert gateway.fleet["openai"].calls == 0


def test_unsupported_input_items_are_a_400_naming_them(sdk: openai.OpenAI) -> None:
    item: Any = {"type": "web_search_call", "id": "ws_1", "status": "completed"}
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model="gpt-4o-mini", input=[item])
    assert "'web_search_call'" in e.value.message and e.value.param == "input.0.type"  # type: ignore[attr-defined]


@pytest.mark.parametrize("stream", [False, True])
def test_item_references_resolve_to_stored_output_items(
    sdk: openai.OpenAI, gateway: Gateway, stream: bool
) -> None:
    """The Vercel AI SDK sends an earlier answer back as ``item_reference`` items (its
    default with ``store``): each is the stored item it names, reasoning and calls too."""
    claude = gateway.fleet["anthropic"]
    model = "claude-sonnet-4-6"

    def create(**kw: Any) -> Any:
        if not stream:
            return sdk.responses.create(model=model, **kw)
        with sdk.responses.stream(model=model, **kw) as s:
            return s.get_final_response()

    def refs(response: Any) -> list[Any]:
        return [{"type": "item_reference", "id": o.id} for o in response.output]

    hi: Any = {"role": "user", "content": "hi"}
    again: Any = {"role": "user", "content": "again"}
    think: Any = {"reasoning": {"effort": "low"}, "max_output_tokens": 3000}
    first = create(input=[hi], **think)
    thought, answer = first.output
    assert thought.type == "reasoning" and answer.type == "message"
    create(input=[hi, *refs(first), again], **think)
    text = thought.summary[0].text
    assert claude.thinking_seen == [{"type": "thinking", "thinking": text, "signature": sign(text)}]
    assert claude.last_request().body["messages"][1]["content"][1]["text"] == CLAUDE_REPLY

    claude.script.reply = '{"city": "Paris"}'
    asked: Any = {"role": "user", "content": "Weather in Paris?"}
    forced: Any = {"type": "function", "name": "get_weather"}
    called = create(input=[asked], tools=[WEATHER], tool_choice=forced)
    [call] = called.output
    assert call.type == "function_call"
    claude.script.reply = "Sunny in Paris."
    output: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    answered = create(input=[asked, *refs(called), output], tools=[WEATHER])
    assert answered.output_text == "Sunny in Paris."
    turns = claude.last_request().body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    [use] = turns[1]["content"]
    assert use["type"] == "tool_use" and use["id"] == call.call_id
    assert use["input"] == {"city": "Paris"}
    # stored, the conversation holds the items themselves: it goes on without their response
    sdk.responses.delete(called.id)
    create(input="and now?", previous_response_id=answered.id, tools=[WEATHER])
    sent = claude.last_request().body["messages"]
    assert [t["role"] for t in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert sent[1]["content"] == turns[1]["content"]


def test_an_unknown_item_reference_is_404_naming_it(sdk: openai.OpenAI, gateway: Gateway) -> None:
    unstored = sdk.responses.create(model="gpt-4o-mini", input="hi", store=False)
    kept = sdk.responses.create(model="gpt-4o-mini", input="hi")
    for ref in [
        "msg_1",  # not one of ours
        unstored.output[0].id,  # its response was not stored
        kept.output[0].id[:-1] + "f",  # a stored response, not one of its items
    ]:
        item: Any = {"type": "item_reference", "id": ref}
        with pytest.raises(openai.NotFoundError) as e:
            sdk.responses.create(model="gpt-4o-mini", input=[item])
        assert e.value.code == "item_not_found" and ref in e.value.message
        assert e.value.param == "input.0.id"  # type: ignore[attr-defined]
    bad: Any = {"type": "item_reference", "id": kept.output[0].id, "role": "user"}
    with pytest.raises(openai.BadRequestError) as e400:
        sdk.responses.create(model="gpt-4o-mini", input=[bad])
    assert e400.value.param == "input.0.role"  # type: ignore[attr-defined]
    assert gateway.fleet["openai"].calls == 2


def test_a_stream_failing_after_the_first_token_ends_with_response_failed(
    gateway: Gateway,
) -> None:
    gateway.fleet["anthropic"].script.cut_stream(after_chunks=2)
    body = {"model": "claude-sonnet-4-6", "input": "hi", "stream": True}
    with gateway.http() as http, http.stream("POST", "/v1/responses", json=body) as r:
        assert r.status_code == 200
        frames = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    kinds = [f["type"] for f in frames]
    assert "response.output_text.delta" in kinds and "response.completed" not in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    failed = frames[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert [f["sequence_number"] for f in frames] == list(range(len(frames)))
    with gateway.http() as http:  # a failed response is not kept
        assert http.get(f"/v1/responses/{failed['id']}").status_code == 404


def test_the_sdks_stream_helper_raises_on_a_failed_stream(
    sdk: openai.OpenAI, gateway: Gateway
) -> None:
    gateway.fleet["anthropic"].script.cut_stream(after_chunks=2)
    with sdk.responses.stream(model="claude-sonnet-4-6", input="hi") as s:
        kinds = [e.type for e in s]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            s.get_final_response()
    assert kinds[-1] == "response.failed"


# -- virtual keys: each sees only its own ------------------------------------------------


@pytest.fixture
def keyed(fleet: Fleet) -> Iterator[Gateway]:
    g = start(fleet, admin_key=ADMIN)
    yield g
    g.server.stop()


def test_a_key_sees_only_its_own_stored_responses(keyed: Gateway) -> None:
    secrets = [asyncio.run(keyed.pr.ledger.create_key(name))[1] for name in ("a", "b")]
    a, b = (openai.OpenAI(base_url=keyed.url + "/v1", api_key=s, max_retries=0) for s in secrets)
    r = a.responses.create(model="gpt-4o-mini", input="hi")
    assert a.responses.retrieve(r.id).id == r.id
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.create(model="gpt-4o-mini", input="hi", previous_response_id=r.id)
    ref: Any = {"type": "item_reference", "id": r.output[0].id}
    with pytest.raises(openai.NotFoundError) as e:
        b.responses.create(model="gpt-4o-mini", input=[ref])
    assert e.value.code == "item_not_found"
    with httpx.Client(base_url=keyed.url, timeout=30) as http:
        other = http.delete(
            f"/v1/responses/{r.id}", headers={"authorization": f"Bearer {secrets[1]}"}
        )
        assert other.status_code == 404
        assert other.json()["error"]["type"] == "invalid_request_error"
        admin = http.get(f"/v1/responses/{r.id}", headers={"authorization": f"Bearer {ADMIN}"})
        assert admin.status_code == 200 and admin.json()["id"] == r.id
    assert a.responses.create(model="gpt-4o-mini", input="more", previous_response_id=r.id)


# -- what the request becomes --------------------------------------------------------------


def test_the_request_maps_every_field() -> None:
    body = {
        "model": "gpt-4o-mini",
        "instructions": "sys",
        "input": [
            {"role": "developer", "content": "dev"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x/i.png", "detail": "low"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,QUJD",
                        "filename": "a.pdf",
                    },
                ],
            },
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "hm"}],
                "encrypted_content": "sig",
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "let me", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ],
        "tools": [
            {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "max_output_tokens": 99,
        "temperature": 0.5,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "metadata": {"k": "v"},
        "user": "u1",
        "text": {
            "format": {
                "type": "json_schema",
                "name": "out",
                "strict": True,
                "schema": {"type": "object"},
            }
        },
        "reasoning": {"effort": "high", "summary": "auto"},
    }
    req = parse(json.dumps(body).encode()).request
    roles = [m.role for m in req.messages]
    assert roles == ["system", "system", "user", "assistant", "tool", "tool"]
    user = req.messages[2].parts
    assert isinstance(user[1], ImagePart) and user[1].detail == "low"
    assert isinstance(user[2], DocumentPart) and user[2].data == "QUJD"
    assert user[2].filename == "a.pdf" and user[2].media_type == "application/pdf"
    turn = req.messages[3]
    assert turn.parts[0] == ThinkingPart("hm", signature="sig")
    assert turn.text == "let me" and [c.id for c in turn.tool_calls] == ["c1", "c2"]
    assert req.messages[5].tool_call_id == "c2" and req.messages[5].name == "g"
    assert req.tools == (Tool("f", "", {"type": "object"}, strict=True),)
    assert req.tool_choice == "f" and req.max_tokens == 99
    assert (req.temperature, req.top_p, req.parallel_tool_calls) == (0.5, 0.9, False)
    assert req.metadata is None and req.user == "u1"  # metadata tags the Response, not the call
    assert req.response_format == JsonSchema("out", {"type": "object"}, strict=True)
    assert req.reasoning == Reasoning(effort="high")


def test_json_object_and_effort_none() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "none"},
    }
    req = parse(json.dumps(body).encode()).request
    assert req.response_format == "json" and req.reasoning is None


# -- where stored responses live ----------------------------------------------------------


def test_another_worker_reads_a_response_the_moment_it_is_answered(fleet: Fleet) -> None:
    """Two gateways on one ledger database, as ``serve --workers 2``: a response answered by
    one is read and continued through the other at once (its write may still be queued)."""
    one, two = start(fleet), start(fleet)
    try:
        with (
            openai.OpenAI(base_url=one.url + "/v1", api_key="x", max_retries=0) as a,
            openai.OpenAI(base_url=two.url + "/v1", api_key="x", max_retries=0) as b,
        ):
            for _ in range(5):
                r = a.responses.create(model="gpt-4o-mini", input="hi")
                assert b.responses.retrieve(r.id).output_text == OPENAI_REPLY
                nxt = b.responses.create(model="gpt-4o-mini", input="on", previous_response_id=r.id)
                assert a.responses.retrieve(nxt.id).previous_response_id == r.id
    finally:
        one.server.stop()
        two.server.stop()


def test_a_clean_shutdown_commits_the_queued_responses(fleet: Fleet) -> None:
    gw = start(fleet)
    try:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0) as c:
            ids = [c.responses.create(model="gpt-4o-mini", input="hi").id for _ in range(3)]
    finally:
        gw.server.stop()
    with sqlite3.connect("ledger.db") as db:
        kept = {row[0] for row in db.execute("SELECT id FROM responses")}
    assert kept == set(ids)


def test_ids_tell_their_age() -> None:
    rid = new_response_id()
    assert rid.startswith("resp_") and len(rid) == 5 + 28
    assert _recent(rid) and not _recent("resp_nope") and not _recent("resp_" + "0" * 28)


def test_reasoning_items_carry_thinking_and_its_signature_back(
    sdk: openai.OpenAI, gateway: Gateway
) -> None:
    claude = gateway.fleet["anthropic"]
    first = sdk.responses.create(
        model="claude-sonnet-4-6", input="hi", reasoning={"effort": "low"}, max_output_tokens=3000
    )
    assert claude.last_request().body["thinking"]["type"] == "enabled"
    thought, answer = first.output
    assert thought.type == "reasoning" and thought.id.startswith("rs_")
    [summary] = thought.summary
    assert thought.encrypted_content == sign(summary.text)
    assert answer.type == "message" and first.output_text == CLAUDE_REPLY
    with sdk.responses.stream(
        model="claude-sonnet-4-6",
        input="again",
        previous_response_id=first.id,
        reasoning={"effort": "low"},
        max_output_tokens=3000,
    ) as s:
        kinds = [e.type for e in s]
        second = s.get_final_response()
    assert claude.thinking_seen == [
        {"type": "thinking", "thinking": summary.text, "signature": thought.encrypted_content}
    ]
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
    ]
    assert "response.reasoning_summary_text.done" in kinds
    assert [o.type for o in second.output] == ["reasoning", "message"]
    assert second.output[0].encrypted_content == sign(second.output[0].summary[0].text)  # type: ignore[union-attr]
