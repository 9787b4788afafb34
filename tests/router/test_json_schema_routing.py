"""A request with a JSON schema goes only to pairs that can honour it, in the library too:
the others are left out with the reason, pins (a pattern's included) are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import NoCandidateError
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, JsonSchema, Message

SCHEMA = JsonSchema("answer", {"type": "object", "properties": {"n": {"type": "integer"}}})
WHY = "lacks capability json_schema (cannot honour response_format json_schema)"


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai",)) as f:
        yield f


@pytest.fixture
async def pr(fleet: Fleet) -> AsyncIterator[Polyroute]:
    settings = fleet.settings(storage={"url": "sqlite://"})
    sim = fleet["openai"]
    common = {"base_url": sim.base_url, "api_key": "env:POLYROUTE_SIM_KEY"}
    settings["providers"]["compat"] = {
        "type": "openai-compatible",
        "models": ["local-llm"],
        **common,
    }
    settings["providers"]["any"] = {"type": "openai-compatible", "models": ["*"], **common}
    p = Polyroute(Config(validate(settings, "test"), "test", fleet.env()))
    yield p
    await p.aclose()


def request(**kw: object) -> ChatRequest:
    return ChatRequest("", (Message.user("How many?"),), **kw)  # type: ignore[arg-type]


async def test_a_schema_routes_only_to_pairs_that_honour_it(pr: Polyroute, fleet: Fleet) -> None:
    answer = await pr.send(request(response_format=SCHEMA), model="gpt-4o-mini")
    assert answer.content == '{"n": 1}'  # the simulator answers in the schema
    sent = fleet["openai"].last_request().body["response_format"]
    assert sent["json_schema"]["schema"] == SCHEMA.schema

    with pytest.raises(NoCandidateError) as info:
        await pr.send(request(response_format=SCHEMA), model="local-llm")
    [out] = info.value.excluded
    assert (out.provider, out.model, out.reason) == ("compat", "local-llm", WHY)
    plain = await pr.send(request(), model="local-llm")  # without a schema it serves
    assert plain.content


async def test_a_pin_listed_by_a_pattern_cannot_skip_the_check(pr: Polyroute) -> None:
    with pytest.raises(NoCandidateError) as info:
        await pr.send(request(response_format=SCHEMA), provider="any", model="whatever-7b")
    [out] = info.value.excluded
    assert (out.provider, out.model, out.reason) == ("any", "whatever-7b", WHY)
