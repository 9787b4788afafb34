"""Every event kind fires in one scripted scenario on the simulators (issue 17, Done when):
a provider failing, its breaker opening and closing again (half-open probe), a fallback,
budget changes, alerts and refusals, health going and coming back, routing decisions."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from polyroute.cli import cli
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import BudgetExceeded
from polyroute.events import TextDelta
from polyroute.hub import (
    EVENT_KINDS,
    BreakerChanged,
    BudgetAlert,
    BudgetChanged,
    BudgetExceededEvent,
    EventHub,
    Fallback,
    HealthChanged,
    HubEvent,
    RequestFailed,
    RequestSucceeded,
    RoutingDecision,
)
from polyroute.ledger import provider_scope
from polyroute.router.breaker import CircuitBreaker
from polyroute.testing import Fleet

RESET_S = 0.05


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply="fine") as f:
        yield f


def make(fleet: Fleet) -> Polyroute:
    settings = fleet.settings(
        storage={"url": "sqlite://"},
        router={
            "retries_per_provider": 0,
            "circuit_breaker": {"failure_threshold": 1, "reset_timeout_s": RESET_S},
        },
    )
    return Polyroute(Config(validate(settings, "test"), "test", fleet.env()))


E = TypeVar("E")


def of(seen: list[HubEvent], kind: type[E]) -> list[E]:
    return [e for e in seen if isinstance(e, kind)]


async def test_every_event_kind_fires_in_one_scenario(fleet: Fleet) -> None:
    pr = make(fleet)
    seen: list[HubEvent] = []
    pr.events.subscribe(seen.append, *EVENT_KINDS)
    try:
        first = pr.route("hi")
        a, b = first.provider, first.fallbacks[0].provider

        # a fails: its breaker opens (threshold 1), the request falls back to b
        fleet[a].script.fail_next(1, 500)
        answer = await pr.complete("hi")
        assert answer.provider == b
        [decision] = of(seen, RoutingDecision)
        assert (decision.decision.provider, decision.stream) == (a, False)
        assert decision.decision.fallbacks[0].provider == b
        [failed] = of(seen, RequestFailed)
        assert failed.provider == a
        [fell] = of(seen, Fallback)
        assert (fell.from_provider, fell.to_provider) == (a, b)
        assert (fell.error_type, fell.status) == ("internal_server", 500)
        [opened] = of(seen, BreakerChanged)
        assert (opened.provider, opened.previous, opened.state) == (a, "closed", "open")
        assert 0 < opened.retry_in_s <= RESET_S and not opened.remote
        assert [e.kind for e in of(seen, RequestSucceeded)] == ["request_succeeded"]

        # its timer over, a's breaker is half-open; the probe (a request pinned to a) closes it
        await asyncio.sleep(RESET_S * 2)
        await pr.complete("hi", provider=a)
        changes = [(e.previous, e.state) for e in of(seen, BreakerChanged)]
        assert {e.provider for e in of(seen, BreakerChanged)} == {a}
        assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]

        # a's key stops working: its probe fails (healthy -> unhealthy), then passes again
        key = fleet[a].api_key
        fleet[a].api_key = "revoked"
        await pr.health(timeout_s=5)
        fleet[a].api_key = key
        await pr.health(timeout_s=5)
        health = of(seen, HealthChanged)
        assert [(e.provider, e.previous, e.state) for e in health] == [
            (a, "unknown", "unhealthy"),
            (a, "unhealthy", "healthy"),
        ]
        assert health[0].why and health[0].error_type == "authentication"
        assert health[1].why is None

        # a budget with an alert at a tiny share: the next call crosses it
        await pr.ledger.set_budget(provider_scope(a), daily_usd=1.0, alert_percents=(0.0001,))
        await pr.complete("hi", provider=a)
        await pr.ledger.flush()
        [alert] = of(seen, BudgetAlert)
        assert alert.scope == provider_scope(a)

        # a budget too small for any call: refused
        await pr.ledger.set_budget(provider_scope(a), daily_usd=0.000001)
        with pytest.raises(BudgetExceeded):
            await pr.complete("hi", provider=a)
        [refused] = of(seen, BudgetExceededEvent)
        assert refused.provider == a
        budget = of(seen, BudgetChanged)
        assert [(e.scope, e.period, e.previous_usd, e.limit_usd, e.reason) for e in budget] == [
            (provider_scope(a), "daily", None, 1.0, "set"),
            (provider_scope(a), "daily", 1.0, 0.000001, "set"),
        ]
        await pr.ledger.flush()
    finally:
        await pr.aclose()
    assert {e.kind for e in seen} == set(EVENT_KINDS)


async def test_a_stream_that_fails_before_content_falls_back_with_an_event(fleet: Fleet) -> None:
    pr = make(fleet)
    seen: list[HubEvent] = []
    pr.events.subscribe(seen.append, "fallback", "routing_decision")
    try:
        a = pr.route("hi").provider
        fleet[a].script.fail_next(1, 429)
        text = [e.text async for e in pr.stream("hi") if isinstance(e, TextDelta)]
        assert "".join(text) == "fine"
    finally:
        await pr.aclose()
    decision, fell = seen
    assert isinstance(decision, RoutingDecision) and decision.stream
    assert isinstance(fell, Fallback)
    assert (fell.from_provider, fell.error_type, fell.status) == (a, "rate_limit", 429)


def test_the_hub_tells_which_kinds_are_wanted() -> None:
    hub = EventHub()
    assert not any(hub.wants(k) for k in EVENT_KINDS)
    stop = hub.subscribe(print, "fallback")
    assert hub.wants("fallback") and not hub.wants("routing_decision")
    stop_all = hub.subscribe(print)
    assert all(hub.wants(k) for k in EVENT_KINDS)
    stop_all()
    stop()
    assert not any(hub.wants(k) for k in EVENT_KINDS)
    with pytest.raises(ValueError, match="no event kind 'fallbacks'"):
        hub.subscribe(print, "fallbacks")  # type: ignore[arg-type]


def test_a_breaker_tells_each_change_and_marks_another_replicas_as_remote() -> None:
    now = [0.0]
    changes: list[tuple[str, str, bool]] = []
    b = CircuitBreaker(
        2,
        10.0,
        clock=lambda: now[0],
        on_change=lambda br, prev, remote: changes.append((prev, br.state, remote)),
    )
    b.failure()
    assert changes == []  # one failure of two: no change
    b.failure()
    now[0] = 10.0
    assert b.state == "half_open"
    b.failure()  # the probe failed
    b.adopt("closed", 0, 0.0)  # another replica's probe passed
    b.adopt("closed", 0, 0.0)  # already closed: nothing to tell
    b.adopt("open", 3, 5.0)
    b.adopt("open", 3, 4.0)  # already open: nothing to tell
    assert changes == [
        ("closed", "open", False),
        ("open", "half_open", False),
        ("half_open", "open", False),
        ("open", "closed", True),
        ("closed", "open", True),
    ]


def test_a_hub_logs_fleet_events_at_info_and_every_event_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def emitted() -> list[dict[str, object]]:
        caplog.clear()
        hub = EventHub()
        hub.emit(BreakerChanged("openai", "closed", "open", 5, 60.0))
        hub.emit(RequestSucceeded("openai", "gpt-4o-mini", 12.0, 3, 4, 0.001, "req_1"))
        return [json.loads(r.getMessage()) for r in caplog.records]

    caplog.set_level(logging.WARNING, logger="polyroute.events")
    assert emitted() == []  # and the hub subscribed nothing: emitters build nothing
    assert not EventHub().wants("breaker_changed")
    caplog.set_level(logging.INFO, logger="polyroute.events")
    assert not EventHub().wants("request_succeeded")
    assert emitted() == [
        {
            "kind": "breaker_changed",
            "provider": "openai",
            "previous": "closed",
            "state": "open",
            "consecutive_failures": 5,
            "retry_in_s": 60.0,
            "remote": False,
        }
    ]
    caplog.set_level(logging.DEBUG, logger="polyroute.events")
    assert [e["kind"] for e in emitted()] == ["breaker_changed", "request_succeeded"]


def test_the_cli_logs_every_event_with_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # what is captured; the polyroute logger says what is sent
    polyroute_log = logging.getLogger("polyroute")
    before = polyroute_log.level
    polyroute_log.setLevel(logging.WARNING)
    try:
        with Fleet(("openai",), reply="fine") as fleet:
            monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
            config = tmp_path / "polyroute.toml"
            config.write_text(fleet.toml())
            quiet = ["budget", "set", "openai", "--monthly", "50", "--config", str(config)]
            assert CliRunner().invoke(cli, quiet).exit_code == 0
            for args in (["budget", "set", "openai", "--daily", "5"], ["ask", "hi"]):
                r = CliRunner().invoke(cli, ["--debug", *args, "--config", str(config)])
                assert r.exit_code == 0, r.output
    finally:
        polyroute_log.setLevel(before)
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "polyroute.events"]
    changed, *rest = events  # without --debug, the monthly change was not logged
    assert changed == {
        "kind": "budget_changed",
        "scope": "provider:openai",
        "period": "daily",
        "previous_usd": None,
        "limit_usd": 5.0,
        "reason": "set",
    }
    kinds = [e["kind"] for e in rest]
    assert kinds[:2] == ["routing_decision", "request_succeeded"] and "usage_recorded" in kinds


def test_the_gateway_logs_fleet_events_at_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyroute.gateway._app import GC_YOUNG, from_env
    from polyroute.gateway._observe import access_log
    from polyroute.hub import events_log

    saved = [
        (log, log.level, log.propagate, list(log.handlers)) for log in (access_log, events_log)
    ]
    thresholds = gc.get_threshold()
    with Fleet(("openai",)) as fleet:
        monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
        config = tmp_path / "polyroute.toml"
        config.write_text(fleet.toml())
        monkeypatch.setenv("POLYROUTE_CONFIG", str(config))
        try:
            from_env()
            hub = EventHub()
            assert hub.wants("breaker_changed") and hub.wants("fallback")
            assert not hub.wants("request_succeeded")  # the access log has a line per request
            assert gc.get_threshold()[0] == GC_YOUNG  # the serving worker collects less often
        finally:
            gc.unfreeze()
            gc.set_threshold(*thresholds)
            for log, level, propagate, handlers in saved:
                log.handlers[:] = handlers
                log.setLevel(level)
                log.propagate = propagate


async def test_a_key_created_with_a_budget_is_a_budget_change(tmp_path: Path) -> None:
    from polyroute.ledger import Ledger, key_scope

    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    seen: list[HubEvent] = []
    ledger.hub.subscribe(seen.append, "budget_changed")
    try:
        key, _ = await ledger.create_key("ci", monthly_usd=20.0)
        await ledger.create_key("free")  # no budget: no event
    finally:
        await ledger.aclose()
    assert seen == [BudgetChanged(key_scope(key.id), "monthly", None, 20.0, "key created")]


async def test_a_health_verdict_from_another_replica_is_a_remote_change() -> None:
    from polyroute.router.health import HealthMonitor, HealthStatus

    changes: list[tuple[str, bool, bool]] = []

    def client(_: str) -> Any:
        raise AssertionError("adopting probes nobody")

    monitor = HealthMonitor(
        client,
        lambda: ["openai"],
        on_change=lambda now, before, remote: changes.append((now.provider, now.ok, remote)),
    )
    assert monitor.adopt(HealthStatus("openai", False, 10.0, 5.0, 0, "HTTP 401", "authentication"))
    assert not monitor.adopt(HealthStatus("openai", True, 9.0, 5.0))  # older: ignored
    assert monitor.adopt(HealthStatus("openai", False, 11.0, 5.0, 0, "HTTP 401"))  # no change
    assert monitor.adopt(HealthStatus("openai", True, 12.0, 5.0))
    assert changes == [("openai", False, True), ("openai", True, True)]
