"""Hooks at the gateway, through the official SDKs: a refusal is a 400 in the caller's own
API shape (chat completions, messages, responses) with the hook's reason; a failing hook a
500 naming it, streamed or not; redaction reaches the upstream and streamed answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from gateway.support import Gateway, running
from polyroute.testing import Fleet

REPLY = "reach me at +1 415 555 0100 or jane.doe@example.com today"
MASKED = "reach me at [REDACTED:phone] or [REDACTED:email] today"
REASON = (
    "refused by hook example-blocklist: the request mentions 'forbidden', which is not allowed here"
)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply=REPLY) as f:
        yield f


@pytest.fixture
def gateway(fleet: Fleet) -> Iterator[Gateway]:
    hooks = {
        "enabled": ["redact", "example-blocklist"],
        "redact": {"responses": True},
    }
    with running(fleet, sections={"hooks": hooks}) as gw:
        yield gw


def clients(gw: Gateway) -> tuple[openai.OpenAI, anthropic.Anthropic]:
    return (
        openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0),
        anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0),
    )


def test_a_refusal_is_a_400_in_each_api_shape(gateway: Gateway, fleet: Fleet) -> None:
    oa, an = clients(gateway)
    user: Any = [{"role": "user", "content": "tell me something forbidden"}]
    with pytest.raises(openai.BadRequestError) as chat:
        oa.chat.completions.create(model="gpt-4o-mini", messages=user)
    assert chat.value.body == {
        "message": REASON,
        "type": "invalid_request_error",
        "param": None,
        "code": "refused_by_hook",
    }
    with pytest.raises(openai.BadRequestError) as resp:
        oa.responses.create(model="gpt-4o-mini", input="tell me something forbidden")
    assert resp.value.code == "refused_by_hook"
    assert isinstance(resp.value.body, dict) and resp.value.body["message"] == REASON
    with pytest.raises(anthropic.BadRequestError) as msg:
        an.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=user)
    assert msg.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": REASON},
    }
    with pytest.raises(openai.BadRequestError) as streamed:  # a stream's refusal: before its head
        oa.chat.completions.create(model="gpt-4o-mini", messages=user, stream=True)
    assert streamed.value.code == "refused_by_hook"
    assert fleet["openai"].calls == fleet["anthropic"].calls == 0


def test_the_upstream_sees_redacted_text_and_answers_come_back_masked(
    gateway: Gateway, fleet: Fleet
) -> None:
    oa, an = clients(gateway)
    user: Any = [{"role": "user", "content": "I am jane.doe@example.com, +44 20 7946 0958"}]
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=user)
    assert r.choices[0].message.content == MASKED
    sent = fleet["openai"].last_request().body["messages"][-1]["content"]
    assert sent == "I am [REDACTED:email], [REDACTED:phone]"
    m = an.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=user)
    assert m.content[0].type == "text" and m.content[0].text == MASKED
    assert "jane" not in json.dumps(fleet["anthropic"].last_request().body)
    assert oa.responses.create(model="gpt-4o-mini", input="hi").output_text == MASKED


def test_streams_are_masked_chunk_by_chunk(gateway: Gateway) -> None:
    """The upstream streams word by word, so the phone number arrives in four chunks: it is
    held until it ends and masked; the rest still streams as it comes."""
    oa, an = clients(gateway)
    user: Any = [{"role": "user", "content": "hi"}]
    chunks = [
        c.choices[0].delta.content
        for c in oa.chat.completions.create(model="gpt-4o-mini", messages=user, stream=True)
        if c.choices and c.choices[0].delta.content
    ]
    assert "".join(chunks) == MASKED
    assert len(chunks) > 3 and not any("415" in c or "jane" in c for c in chunks)
    with an.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=user) as s:
        texts = list(s.text_stream)
    assert "".join(texts) == MASKED and len(texts) > 3
    events = oa.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    done = [e for e in events if e.type == "response.completed"]
    assert done[0].response.output_text == MASKED


def test_fusion_members_get_the_redacted_request(gateway: Gateway, fleet: Fleet) -> None:
    oa, _ = clients(gateway)
    user: Any = [{"role": "user", "content": "my mail is jane.doe@example.com"}]
    r = oa.chat.completions.create(model="fusion", messages=user)
    assert r.choices[0].message.content == MASKED
    for vendor in ("openai", "anthropic"):
        body = json.dumps(fleet[vendor].last_request().body)
        assert "jane" not in body and "[REDACTED:email]" in body


@pytest.mark.parametrize(
    ("hook", "why"),
    [
        ("example-crash", "hook example-crash failed: pre_request raised RuntimeError"),
        ("example-slow", "hook example-slow failed: pre_request gave no answer within 0.05 s"),
    ],
)
def test_a_failing_hook_is_a_500_naming_it(fleet: Fleet, hook: str, why: str) -> None:
    """Plain, streamed, and in the Anthropic shape; never a hang, never sent unhooked."""
    with running(fleet, sections={"hooks": {"enabled": [hook], "timeout_s": 0.05}}) as gw:
        with gw.http() as http:
            for stream in (False, True):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
                r = http.post("/v1/chat/completions", json=body | {"stream": stream})
                assert r.status_code == 500
                assert r.json()["error"] == {
                    "message": why,
                    "type": "server_error",
                    "param": None,
                    "code": "hook_failed",
                }
            r = http.post("/v1/messages", json=body | {"max_tokens": 50})
            assert r.status_code == 500 and r.json()["error"]["message"] == why
        assert fleet["openai"].calls == fleet["anthropic"].calls == 0


def test_a_filter_failing_mid_stream_ends_it_with_an_error_frame(fleet: Fleet) -> None:
    """After the head is sent, a failing stream filter is the format's error event, never a
    clean end of a partial answer."""
    hooks = {"enabled": ["example-crash"], "example-crash": {"step": "stream"}}
    with running(fleet, sections={"hooks": hooks}) as gw, gw.http() as http:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        r = http.post("/v1/chat/completions", json=body | {"stream": True})
        assert r.status_code == 200
        frames = [json.loads(line[6:]) for line in r.text.splitlines() if line[6:7] == "{"]
        assert frames[-1]["error"]["message"] == (
            "hook example-crash failed: stream_filter raised RuntimeError"
        )
        assert "[DONE]" not in r.text
        r = http.post("/v1/messages", json=body | {"stream": True, "max_tokens": 50})
        assert r.status_code == 200 and "event: error" in r.text


def test_embeddings_input_is_redacted_at_the_gateway(gateway: Gateway, fleet: Fleet) -> None:
    oa, _ = clients(gateway)
    oa.embeddings.create(model="text-embedding-3-small", input=["ask jane.doe@example.com"])
    assert fleet["openai"].last_request().body["input"] == ["ask [REDACTED:email]"]


def test_count_tokens_sends_the_hooked_request(gateway: Gateway, fleet: Fleet) -> None:
    """/v1/messages/count_tokens sends the messages to an Anthropic upstream to be counted:
    that request is redacted too, and a refusal is the same 400."""
    _, an = clients(gateway)
    user: Any = [{"role": "user", "content": "I am jane.doe@example.com"}]
    an.messages.count_tokens(model="claude-sonnet-4-6", messages=user)
    sent = fleet["anthropic"].last_request()
    assert sent.path == "/v1/messages/count_tokens"
    assert "jane" not in json.dumps(sent.body) and "[REDACTED:email]" in json.dumps(sent.body)
    forbidden: Any = [{"role": "user", "content": "forbidden"}]
    with pytest.raises(anthropic.BadRequestError) as info:
        an.messages.count_tokens(model="claude-sonnet-4-6", messages=forbidden)
    assert info.value.body["error"]["message"] == REASON
