"""A field a vendor cannot carry excludes that vendor's pairs in routing, with the adapter's
reason naming the field; a pin to it is refused before any call (DESIGN §9)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.support import polyroute
from polyroute.client import Polyroute
from polyroute.config import ProviderConfig
from polyroute.errors import NoCandidateError
from polyroute.router.fields import refusals
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, DocumentPart, Message, ToolCall

PDF = DocumentPart(data="JVBERi0xLjQK")


def ask(**fields: object) -> ChatRequest:
    return ChatRequest("auto", [Message.user("hi")], **fields)  # type: ignore[arg-type]


def test_refusals_are_asked_of_each_vendor_type_and_name_the_field() -> None:
    providers = {
        pid: ProviderConfig(type=t)
        for pid, t in (
            ("oa", "openai"),
            ("an", "anthropic"),
            ("an2", "anthropic"),
            ("ol", "ollama"),
        )
    }
    assert refusals(ask(), providers, stream=False) == {}  # nothing asked: nothing refused
    out = refusals(ask(n=2), providers, stream=False)
    assert set(out) == {"an", "an2", "ol"}
    assert out["an"].startswith("anthropic cannot take n")
    doc = ChatRequest("auto", [Message.user([PDF])])
    assert set(refusals(doc, providers, stream=False)) == {"ol"}
    assert set(refusals(ask(logprobs=True), providers, stream=True)) == {"oa", "an", "an2", "ol"}


@pytest.fixture
def pr() -> Iterator[Polyroute]:
    with Fleet() as fleet:
        yield polyroute(fleet)


async def test_auto_routes_only_where_the_field_is_carried(pr: Polyroute) -> None:
    async with pr:
        for _ in range(3):
            answer = await pr.send(ask(n=2))
            assert answer.provider in {"openai", "google", "mistral"}
            assert answer.response is not None and len(answer.response.alternatives) == 1
    decision = pr.recent[-1].decision
    reasons = {e.provider: e.reason for e in decision.excluded}
    assert reasons["anthropic"].startswith("anthropic cannot take n")
    assert reasons["ollama"].startswith("ollama cannot take n")


async def test_a_pin_to_a_vendor_that_cannot_is_refused_before_any_call(pr: Polyroute) -> None:
    async with pr:
        with pytest.raises(NoCandidateError, match="anthropic cannot take seed"):
            await pr.send(ask(seed=1), provider="anthropic", model="claude-sonnet-4-6")


async def test_a_request_one_vendor_cannot_translate_goes_to_another(pr: Polyroute) -> None:
    # tool arguments that are not a JSON object: Anthropic cannot send them back
    request = ChatRequest(
        "auto",
        [
            Message.user("go"),
            Message.assistant("", [ToolCall("call_1", "f", "[1, 2]")]),
            Message.tool("call_1", "done", name="f"),
        ],
        service_tier="auto",  # a field some vendor refuses: the adapters are asked
    )
    async with pr:
        answer = await pr.send(request, models=["claude-sonnet-4-6", "gpt-4o-mini"])
    assert answer.provider == "openai"
    reasons = {e.provider: e.reason for e in pr.recent[-1].decision.excluded}
    assert "arguments as a JSON object" in reasons["anthropic"]
