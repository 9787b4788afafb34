"""Meter: what a metered call writes to the ledger (streams whole, cut and abandoned), and the
worst-case bound it reserves."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from polyroute.catalog import CatalogModel, Price
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import LedgerError, StreamInterruptedError
from polyroute.events import StreamEnd, TextDelta
from polyroute.hub import HubEvent, RequestFailed, RequestSucceeded
from polyroute.ledger import (
    Ledger,
    Reservation,
    embedding_worst_case_usd,
    prompt_token_bound,
    worst_case_usd,
)
from polyroute.ledger._meter import DEFAULT_OUTPUT_BOUND, worst_case
from polyroute.ledger._schema import usage
from polyroute.ledger._store import Store
from polyroute.testing import Fleet
from polyroute.tokens import IMAGE_TOKENS, embedding_token_bound
from polyroute.types import ChatRequest, EmbeddingRequest, ImagePart, Message, TextPart, Tool

MODEL = "gpt-4o-mini"
PRICE = (2.0, 8.0)  # USD per Mtok, input and output
REPLY = "Routing is choosing well"  # chunks: "Routing ", "is ", "choosing ", "well"


def usd(prompt: int, completion: int) -> float:
    return (prompt * PRICE[0] + completion * PRICE[1]) / 1e6


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai",), reply=REPLY) as f:
        yield f


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[Ledger]:
    led = Ledger(db_url)
    yield led
    await led.aclose()


@pytest.fixture
async def pr(fleet: Fleet, ledger: Ledger) -> AsyncIterator[Polyroute]:
    settings = fleet.settings(
        models={MODEL: {"input_usd_per_mtok": PRICE[0], "output_usd_per_mtok": PRICE[1]}}
    )
    p = Polyroute(Config(validate(settings, "test"), "test", fleet.env()), ledger=ledger)
    yield p
    await p.aclose()
    fleet["openai"].script.recover()


async def rows(ledger: Ledger) -> list[dict[str, Any]]:
    await ledger.flush()

    def read(store: Store) -> list[dict[str, Any]]:
        with store.read() as c:
            return [dict(r) for r in c.execute(select(usage).order_by(usage.c.id)).mappings()]

    return await ledger.run(read)


HI_BOUND = math.ceil(len(b"hi") / 3) + 8  # the prompt bound of a lone "hi"


async def test_stream_records_time_to_first_token_and_the_end_usage(
    pr: Polyroute, ledger: Ledger
) -> None:
    seen: list[HubEvent] = []
    pr.events.subscribe(seen.append, "request_succeeded", "request_failed")
    stream = pr.stream("hi")
    texts = [e.text async for e in stream if isinstance(e, TextDelta)]
    assert "".join(texts) == REPLY
    assert stream.answer is not None and stream.answer.cost_usd == pytest.approx(usd(1, 6))
    [row] = await rows(ledger)
    assert (row["provider"], row["model"], row["status"], row["error_type"]) == (
        "openai",
        MODEL,
        "ok",
        None,
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (1, 6)
    assert row["cost_nusd"] == round(usd(1, 6) * 1e9)
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]
    [ok] = seen
    assert isinstance(ok, RequestSucceeded) and ok.completion_tokens == 6


async def test_stream_cut_after_content_is_an_error_charged_for_what_arrived(
    pr: Polyroute, fleet: Fleet, ledger: Ledger
) -> None:
    fleet["openai"].script.cut_stream(after_chunks=2)
    texts: list[str] = []
    with pytest.raises(StreamInterruptedError):
        async for e in pr.stream("hi"):
            if isinstance(e, TextDelta):
                texts.append(e.text)
            assert not isinstance(e, StreamEnd)
    assert "".join(texts) == "Routing is "
    [row] = await rows(ledger)
    assert (row["status"], row["error_type"]) == ("error", "stream_interrupted")
    completion = math.ceil(len("Routing is ") / 4)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (HI_BOUND, completion)
    assert completion > 0 and row["cost_nusd"] == round(usd(HI_BOUND, completion) * 1e9)
    assert row["ttft_ms"] is not None


async def test_stream_cut_before_content_costs_nothing(
    pr: Polyroute, fleet: Fleet, ledger: Ledger
) -> None:
    # the executor retries it transparently: the cut attempt and the good one are both rows
    fleet["openai"].script.cut_stream(after_chunks=0)
    async for _ in pr.stream("hi"):
        pass
    cut, served = await rows(ledger)
    assert (cut["status"], cut["completion_tokens"], cut["cost_nusd"]) == ("error", 0, 0)
    assert cut["ttft_ms"] is None
    assert served["status"] == "ok"


async def test_breaking_out_of_a_stream_records_cancelled(pr: Polyroute, ledger: Ledger) -> None:
    failed: list[HubEvent] = []
    pr.events.subscribe(failed.append, "request_failed")
    async for e in pr.stream("hi"):
        if isinstance(e, TextDelta):
            break  # the abandoned generators are closed by the loop soon after
    for _ in range(200):
        if failed:
            break
        await asyncio.sleep(0.005)
    [row] = await rows(ledger)
    assert (row["status"], row["error_type"]) == ("cancelled", None)
    completion = math.ceil(len("Routing ") / 4)
    assert row["completion_tokens"] == completion
    assert row["cost_nusd"] == round(usd(HI_BOUND, completion) * 1e9)
    [event] = failed
    assert isinstance(event, RequestFailed)
    assert event.error_type == "cancelled" and event.status is None


async def test_completed_call_and_stream_are_one_record_each(pr: Polyroute, ledger: Ledger) -> None:
    await pr.complete("hi")
    async for _ in pr.stream("hi"):
        pass
    await pr.complete("hi", max_tokens=2)
    statuses = [(r["status"], r["completion_tokens"]) for r in await rows(ledger)]
    assert statuses == [("ok", 6), ("ok", 6), ("ok", 2)]
    report = await pr.usage(by="model")
    assert report.requests == 3 and report.total_cost_usd == pytest.approx(
        2 * usd(1, 6) + usd(1, 2)
    )


async def test_a_cancelled_call_is_recorded_cancelled_and_free(
    pr: Polyroute, fleet: Fleet, ledger: Ledger
) -> None:
    fleet["openai"].script.hang_next(0.5)
    before = fleet["openai"].calls
    task = asyncio.create_task(pr.complete("hi"))
    for _ in range(500):  # cancel once the call is out (a first call sets up for a while)
        if fleet["openai"].calls > before:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [row] = await rows(ledger)
    assert (row["status"], row["error_type"], row["cost_nusd"]) == ("cancelled", None, 0)


async def test_a_call_no_budget_governs_holds_nothing_and_a_new_budget_holds_at_once(
    pr: Polyroute, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pr.complete("hi")  # the ledger has read its budgets: there are none
    asked: list[float | None] = []
    reserve = ledger.reserve

    async def spy(**kw: Any) -> Reservation:
        asked.append(kw["amount_usd"])
        return await reserve(**kw)

    monkeypatch.setattr(ledger, "reserve", spy)
    await pr.complete("hi")
    assert asked == []  # nothing to hold: the ledger is not asked, no worst case is priced
    await ledger.set_budget("global", daily_usd=5.0)
    await pr.complete("hi")
    assert len(asked) == 1 and asked[0]  # the worst case, held at once
    assert len(await rows(ledger)) == 3
    [held] = [b for b in await ledger.budgets() if b.scope == "global"]
    assert held.daily.reserved_usd == 0.0 and held.daily.spent_usd == pytest.approx(3 * usd(1, 6))


async def test_a_closed_ledger_refuses_a_call_no_budget_governs_before_it_is_sent(
    pr: Polyroute, fleet: Fleet, ledger: Ledger
) -> None:
    await pr.complete("hi")
    before = fleet["openai"].calls
    await ledger.aclose()
    with pytest.raises(LedgerError, match="closed"):
        await pr.complete("hi")
    assert fleet["openai"].calls == before
    await pr.aclose()  # the ledger's owner closed it first: the client has nothing to flush


# -- the worst case ------------------------------------------------------------------


PRICED = Price(1.0, 2.0)


def entry(max_output: int | None = 100, price: Price | None = PRICED) -> CatalogModel:
    return CatalogModel("m", "openai", max_output_tokens=max_output, price=price)


def request(*messages: Message, max_tokens: int | None = None, tools: Any = ()) -> ChatRequest:
    return ChatRequest("m", messages or (Message.user("x" * 30),), max_tokens, tools=tools)


def test_prompt_token_bound_is_bytes_over_three_plus_framing() -> None:
    assert prompt_token_bound(request()) == 10 + 8
    assert prompt_token_bound(request(Message.user("é" * 3))) == 2 + 8  # 6 bytes
    two = request(Message.system("be brief"), Message.user("x" * 30))
    assert prompt_token_bound(two) == (3 + 8) + (10 + 8)
    assert prompt_token_bound(request(Message.user(""))) == 8


def test_images_and_tools_add_tokens() -> None:
    image = Message.user([TextPart("look"), ImagePart(url="https://example.com/a.png")])
    assert prompt_token_bound(request(image)) == IMAGE_TOKENS + 2 + 8
    two_images = Message.user([ImagePart(data="AAAA"), ImagePart(data="BBBB")])
    assert prompt_token_bound(request(two_images)) == 2 * IMAGE_TOKENS + 8

    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = Tool("get_weather", "Weather now", params)
    plain = prompt_token_bound(request())
    with_tool = prompt_token_bound(request(tools=[tool]))
    size = len("get_weather") + len("Weather now") + len(json.dumps(params))
    assert with_tool == plain + math.ceil(size / 3) + 8
    assert prompt_token_bound(request(tools=[tool, tool])) == plain + 2 * (with_tool - plain)


def test_worst_case_output_bound_request_then_catalog_then_default() -> None:
    prompt = prompt_token_bound(request())
    assert worst_case_usd(entry(), request(max_tokens=50)) == pytest.approx(
        (prompt * 1.0 + 50 * 2.0) / 1e6
    )
    assert worst_case_usd(entry(), request()) == pytest.approx((prompt + 100 * 2.0) / 1e6)
    assert worst_case_usd(entry(max_output=None), request()) == pytest.approx(
        (prompt + DEFAULT_OUTPUT_BOUND * 2.0) / 1e6
    )
    assert worst_case_usd(entry(max_output=None), request(max_tokens=7)) == pytest.approx(
        (prompt + 14) / 1e6
    )


def test_worst_case_of_an_unpriced_model_is_none_and_free_is_zero() -> None:
    assert worst_case_usd(entry(price=None), request(max_tokens=10)) is None
    assert worst_case_usd(entry(price=Price(0.0, 0.0)), request()) == 0.0


def test_worst_case_is_the_rate_limits_tokens_and_the_budgets_money_of_one_bound() -> None:
    two = replace(request(max_tokens=50), n=2)
    prompt = prompt_token_bound(two)
    assert worst_case(entry(), two) == (prompt + 100, pytest.approx((prompt + 200) / 1e6))
    assert worst_case(entry(price=None), two) == (prompt + 100, None)
    texts = EmbeddingRequest("e", ["x" * 30, "hi"])
    tokens = embedding_token_bound(texts)
    assert tokens > 0 and worst_case(entry(), texts) == (tokens, pytest.approx(tokens / 1e6))
    assert embedding_worst_case_usd(entry(), texts) == worst_case(entry(), texts)[1]
    assert worst_case(entry(price=None), texts) == (tokens, None)


def test_worst_case_covers_what_the_simulator_charges() -> None:
    """The bound (bytes/3) is above the simulators' count (chars/4), whatever the text."""
    for text in ("hi", "x" * 1000, "日本語のテキスト" * 20, "a b c d e f " * 50):
        req = request(Message.user(text))
        assert prompt_token_bound(req) >= math.ceil(len(text) / 4)
