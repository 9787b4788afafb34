"""Presence and frequency penalties, top_k and logit_bias in each vendor's words, or refused
by that vendor's adapter naming the field (DESIGN §9), and routing asks about them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.support import polyroute
from polyroute.config import ProviderConfig
from polyroute.errors import NoCandidateError, UnsupportedError
from polyroute.providers import protocol_for
from polyroute.router.fields import refusals
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, Message, Reasoning, Tool

ALL = {"presence_penalty": 0.5, "frequency_penalty": -1.0, "top_k": 20, "logit_bias": {"9": 5.0}}
PENALTIES = {"presence_penalty": 0.5, "frequency_penalty": -1.0}


def ask(**fields: Any) -> ChatRequest:
    return ChatRequest("m", [Message.user("hi")], **fields)


def sent(vendor: str, request: ChatRequest, *, stream: bool = False) -> Any:
    call = protocol_for(vendor).chat(request, stream=stream)
    assert call.json is not None
    return call.json


@pytest.mark.parametrize("vendor", ["openai", "openai-compatible"])
def test_openai_types_carry_penalties_and_logit_bias(vendor: str) -> None:
    body = sent(vendor, ask(**PENALTIES, logit_bias={"9": 5.0}), stream=True)
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -1.0)
    assert body["logit_bias"] == {"9": 5.0}


def test_mistral_carries_the_penalties() -> None:
    body = sent("mistral", ask(**PENALTIES))
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -1.0)


def test_gemini_takes_them_in_generation_config() -> None:
    config = sent("google", ask(**PENALTIES, top_k=20))["generationConfig"]
    assert (config["presencePenalty"], config["frequencyPenalty"], config["topK"]) == (
        0.5,
        -1.0,
        20,
    )


def test_ollama_takes_them_as_options() -> None:
    options = sent("ollama", ask(**PENALTIES, top_k=20, temperature=0.1))["options"]
    assert options == {
        "temperature": 0.1,
        "presence_penalty": 0.5,
        "frequency_penalty": -1.0,
        "top_k": 20,
    }


def test_anthropic_takes_top_k() -> None:
    assert sent("anthropic", ask(top_k=20))["top_k"] == 20


def test_anthropic_counts_tokens_without_top_k() -> None:
    call = protocol_for("anthropic").count_tokens(ask(top_k=20))
    assert call.json is not None and "top_k" not in call.json


def test_anthropic_refuses_top_k_with_thinking() -> None:
    with pytest.raises(UnsupportedError, match="top_k cannot be set with thinking"):
        sent("anthropic", ask(top_k=5, max_tokens=4000, reasoning=Reasoning(budget_tokens=2000)))


def test_eager_input_streaming_reaches_anthropic_only() -> None:
    tool = Tool("f", "", {"type": "object"}, eager_input_streaming=True)
    assert sent("anthropic", ask(tools=[tool]))["tools"][0]["eager_input_streaming"] is True
    assert "eager_input_streaming" not in str(sent("openai", ask(tools=[tool])))


REFUSED = [
    ("openai", "top_k"),
    ("openai-compatible", "top_k"),
    ("mistral", "top_k"),
    ("mistral", "logit_bias"),
    ("google", "logit_bias"),
    ("ollama", "logit_bias"),
    ("anthropic", "presence_penalty"),
    ("anthropic", "frequency_penalty"),
    ("anthropic", "logit_bias"),
]


@pytest.mark.parametrize(("vendor", "field"), REFUSED)
def test_a_vendor_without_the_field_refuses_it_by_name(vendor: str, field: str) -> None:
    with pytest.raises(UnsupportedError, match=f"^{vendor} cannot take {field}"):
        sent(vendor, ask(**{field: ALL[field]}))


@pytest.mark.parametrize("field", list(ALL))
def test_routing_asks_each_vendor_about_each_field(field: str) -> None:
    providers = {t: ProviderConfig(type=t) for t in ("openai", "anthropic", "google", "mistral")}
    providers["ollama"] = ProviderConfig(type="ollama")
    out = refusals(ask(**{field: ALL[field]}), providers, stream=False)
    assert set(out) == {vendor for vendor, f in REFUSED if f == field and vendor in providers}
    for vendor, why in out.items():
        assert why.startswith(f"{vendor} cannot take {field}")


async def test_library_callers_send_them_and_auto_goes_where_they_are_carried() -> None:
    request = ChatRequest("auto", [Message.user("hi")], top_k=7, presence_penalty=0.5)
    with Fleet() as fleet:
        pr = polyroute(fleet)
        async with pr:
            answer = await pr.send(request)
            assert answer.provider in {"google", "ollama"}  # both fields, in their words
            sent = fleet[answer.provider].last_request().body
            assert "7" in str(sent) and "0.5" in str(sent)
            reasons = {e.provider: e.reason for e in pr.recent[-1].decision.excluded}
            assert reasons["openai"].startswith("openai cannot take top_k")
            assert reasons["anthropic"].startswith("anthropic cannot take presence_penalty")
            with pytest.raises(NoCandidateError, match="mistral cannot take top_k"):
                await pr.send(request, provider="mistral", model="mistral-small-latest")


def test_the_anthropic_simulator_refuses_fields_the_api_has_not() -> None:
    with Fleet() as fleet:
        sim = fleet["anthropic"]
        headers = {"x-api-key": sim.api_key or "", "anthropic-version": "2023-06-01"}
        body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user"}]}
        with httpx.Client(base_url=sim.base_url, headers=headers) as http:
            r = http.post("/v1/messages", json={**body, "presence_penalty": 0.5})
    assert r.status_code == 400
    assert r.json()["error"]["message"].endswith("presence_penalty: Extra inputs are not permitted")
