"""EventHub: subscriptions, kind filters, failing observers, cross-thread delivery; and the
events a Polyroute call emits against a simulated provider."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import AllProvidersFailedError, BudgetExceeded, InternalServerError
from polyroute.hub import (
    BudgetAlert,
    BudgetExceededEvent,
    EventHub,
    HubEvent,
    RequestFailed,
    RequestSucceeded,
    UsageRecorded,
)
from polyroute.ledger import (
    Ledger,
    UsageRecord,
    config_budgets,
    prompt_token_bound,
    worst_case_usd,
)
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, Message

MODEL = "gpt-4o-mini"
PRICE = (2.0, 8.0)  # USD per Mtok, input and output
REPLY = "Routing is choosing well"  # 24 characters: 6 simulated tokens

OK = RequestSucceeded("p", "m", 1.0, 1, 2, 0.5, "rid")
FAILED = RequestFailed("p", "m", 2.0, "rate_limit", "slow down", 429)
ALERT = BudgetAlert("global", "daily", "day:2026-03-10", 50, 0.5, 1.0)
RECORDED = UsageRecorded(UsageRecord(ts=0.0, provider="p", model="m"))


# -- the hub on its own ----------------------------------------------------------


def test_subscribe_unsubscribe_and_listening() -> None:
    hub = EventHub()
    assert not hub.listening
    hub.emit(OK)  # nobody listens: nothing happens
    first: list[HubEvent] = []
    second: list[HubEvent] = []
    stop_first = hub.subscribe(first.append)
    stop_second = hub.subscribe(second.append)
    assert hub.listening
    hub.emit(OK)
    stop_first()
    stop_first()  # twice is harmless
    hub.emit(FAILED)
    assert first == [OK]
    assert second == [OK, FAILED]
    stop_second()
    assert not hub.listening
    hub.emit(ALERT)
    assert second == [OK, FAILED]


def test_the_same_callback_twice_is_two_subscriptions() -> None:
    hub = EventHub()
    seen: list[HubEvent] = []
    stop = hub.subscribe(seen.append)
    hub.subscribe(seen.append, "request_failed")
    hub.emit_many([OK, FAILED])
    assert seen == [OK, FAILED, FAILED]
    stop()  # removes only its own subscription
    hub.emit(FAILED)
    assert seen == [OK, FAILED, FAILED, FAILED]


def test_kind_filters() -> None:
    hub = EventHub()
    alerts: list[HubEvent] = []
    money: list[HubEvent] = []
    everything: list[HubEvent] = []
    hub.subscribe(alerts.append, "budget_alert")
    hub.subscribe(money.append, "budget_alert", "budget_exceeded", "usage_recorded")
    hub.subscribe(everything.append)
    exceeded = BudgetExceededEvent("global", "monthly", 1.0, 0.9, 0.05, 0.1, "p", "m")
    hub.emit_many([OK, ALERT, FAILED, exceeded, RECORDED])
    assert alerts == [ALERT]
    assert money == [ALERT, exceeded, RECORDED]
    assert everything == [OK, ALERT, FAILED, exceeded, RECORDED]
    assert [e.kind for e in everything] == [
        "request_succeeded",
        "budget_alert",
        "request_failed",
        "budget_exceeded",
        "usage_recorded",
    ]


def test_a_raising_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = EventHub()
    before: list[HubEvent] = []
    after: list[HubEvent] = []

    def broken(event: HubEvent) -> None:
        raise RuntimeError(f"observer bug on {event.kind}")

    hub.subscribe(before.append)
    hub.subscribe(broken)
    hub.subscribe(after.append)
    with caplog.at_level(logging.ERROR, logger="polyroute.hub"):
        hub.emit_many([OK, FAILED])  # does not raise
    assert before == [OK, FAILED] and after == [OK, FAILED]
    failures = [r for r in caplog.records if r.name == "polyroute.hub"]
    assert len(failures) == 2
    assert "request_succeeded" in failures[0].getMessage()
    assert "event subscriber" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert "observer bug on request_failed" in str(failures[1].exc_info[1])  # type: ignore[index]


async def test_emit_from_another_thread_is_delivered_on_the_bound_loop() -> None:
    hub = EventHub()
    loop = asyncio.get_running_loop()
    hub.bind(loop)
    delivered: list[tuple[HubEvent, int]] = []
    done = asyncio.Event()

    def on_event(event: HubEvent) -> None:
        delivered.append((event, threading.get_ident()))
        if len(delivered) == 3:
            done.set()  # an asyncio.Event: only safe because we run on the loop's thread

    hub.subscribe(on_event)
    emitter: list[int] = []

    def emit_elsewhere() -> None:
        emitter.append(threading.get_ident())
        hub.emit(OK)
        hub.emit_many([FAILED, ALERT])

    worker = threading.Thread(target=emit_elsewhere)
    worker.start()
    worker.join()
    assert delivered == []  # handed over, not run on the emitting thread
    await asyncio.wait_for(done.wait(), 2)
    here = threading.get_ident()
    assert [e for e, _ in delivered] == [OK, FAILED, ALERT]
    assert {t for _, t in delivered} == {here} and emitter[0] != here

    hub.emit(RECORDED)  # on the loop's own thread: delivered at once
    assert delivered[-1] == (RECORDED, here)


def test_without_a_bound_loop_delivery_is_on_the_emitting_thread() -> None:
    hub = EventHub()
    seen: list[int] = []
    hub.subscribe(lambda _e: seen.append(threading.get_ident()))
    worker = threading.Thread(target=hub.emit, args=(OK,))
    worker.start()
    worker.join()
    assert seen == [worker.ident]


async def test_a_bound_loop_that_stopped_does_not_swallow_events() -> None:
    hub = EventHub()
    other = asyncio.new_event_loop()
    hub.bind(other)  # bound but never running
    seen: list[HubEvent] = []
    hub.subscribe(seen.append)
    await asyncio.to_thread(hub.emit, OK)
    other.close()
    assert seen == [OK]


# -- events from Polyroute calls -----------------------------------------------------


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai",), reply=REPLY) as f:
        yield f


ONE_SHOT = {"max_attempts": 1, "retries_per_provider": 0}  # one attempt: no retry, no fallback


def make_config(fleet: Fleet, budget: dict[str, Any] | None = None, **sections: Any) -> Config:
    settings = fleet.settings(
        models={MODEL: {"input_usd_per_mtok": PRICE[0], "output_usd_per_mtok": PRICE[1]}},
        **sections,
    )
    if budget is not None:
        settings["providers"]["openai"]["budget"] = budget
    return Config(validate(settings, "test"), "test", fleet.env())


@pytest.fixture
async def ledger(tmp_path: Path, fleet: Fleet) -> AsyncIterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/l.db")
    yield led
    await led.aclose()
    fleet["openai"].script.recover()


async def test_success_emits_request_succeeded_then_usage_recorded(
    fleet: Fleet, ledger: Ledger
) -> None:
    async with Polyroute(make_config(fleet), ledger=ledger) as pr:
        assert pr.events is ledger.hub
        seen: list[HubEvent] = []
        pr.events.subscribe(seen.append, "request_succeeded", "usage_recorded")
        answer = await pr.complete("hi")
        assert answer.content == REPLY
        [ok] = seen  # at once, on the loop; the usage row comes with the ledger's write
        assert isinstance(ok, RequestSucceeded)
        cost = (1 * PRICE[0] + 6 * PRICE[1]) / 1e6
        assert (ok.provider, ok.model, ok.prompt_tokens, ok.completion_tokens) == (
            "openai",
            MODEL,
            1,
            6,
        )
        assert ok.cost_usd == pytest.approx(cost) and ok.latency_ms > 0
        assert ok.request_id and ok.request_id.startswith("req_")
        await ledger.flush()
        [_, recorded] = seen
        assert isinstance(recorded, UsageRecorded)
        r = recorded.record
        assert (r.provider, r.model, r.status, r.error_type) == ("openai", MODEL, "ok", None)
        assert (r.prompt_tokens, r.completion_tokens) == (1, 6)
        assert r.cost_usd == pytest.approx(cost) and r.request_id == ok.request_id


async def test_a_500_emits_request_failed_and_an_error_record(fleet: Fleet, ledger: Ledger) -> None:
    fleet["openai"].script.fail_next(1, 500)
    async with Polyroute(make_config(fleet, router=ONE_SHOT), ledger=ledger) as pr:
        seen: list[HubEvent] = []
        pr.events.subscribe(seen.append, "request_failed", "usage_recorded")
        with pytest.raises(AllProvidersFailedError) as info:
            await pr.complete("hi")
        await ledger.flush()
    assert isinstance(info.value.last, InternalServerError)
    [failed, recorded] = seen
    assert isinstance(failed, RequestFailed)
    assert (failed.provider, failed.model, failed.error_type, failed.status) == (
        "openai",
        MODEL,
        "internal_server",
        500,
    )
    assert "internal server error" in failed.message
    assert isinstance(recorded, UsageRecorded)
    r = recorded.record
    assert (r.status, r.error_type, r.cost_usd, r.completion_tokens) == (
        "error",
        "internal_server",
        0.0,
        0,
    )
    assert r.request_id and r.request_id.startswith("req_")


async def test_a_budget_refusal_emits_budget_exceeded_and_calls_nobody(
    fleet: Fleet, tmp_path: Path
) -> None:
    config = make_config(
        fleet,
        budget={"daily_usd": 0.0001},  # one worst case of gpt-4o-mini is ~$0.13
        storage={"url": f"sqlite:///{tmp_path}/own.db"},
        router=ONE_SHOT,
    )
    sim = fleet["openai"]
    calls = sim.calls
    pr = Polyroute(config)  # its own ledger, from the config (budgets included)
    try:
        seen: list[HubEvent] = []
        pr.events.subscribe(seen.append, "budget_exceeded", "request_failed", "usage_recorded")
        with pytest.raises(BudgetExceeded) as info:
            await pr.complete("hi")
        await pr.ledger.flush()
    finally:
        await pr.aclose()
    assert sim.calls == calls
    [event] = seen  # nothing was called, so nothing failed and nothing was recorded
    assert isinstance(event, BudgetExceededEvent)
    request = ChatRequest(MODEL, (Message.user("hi"),))
    worst = worst_case_usd(pr.catalog.get("openai", MODEL), request)
    assert worst == pytest.approx((prompt_token_bound(request) * 2 + 16384 * 8) / 1e6)
    assert (event.scope, event.period, event.limit_usd) == ("provider:openai", "daily", 0.0001)
    assert (event.spent_usd, event.reserved_usd) == (0.0, 0.0)
    assert event.requested_usd == pytest.approx(worst)
    assert (event.provider, event.model) == ("openai", MODEL)
    assert info.value.scope == event.scope and info.value.requested_usd == event.requested_usd
    assert config_budgets(config)["provider:openai"].daily_usd == 0.0001
