"""Webhook alerts (issue 17 point 2) against a loopback receiver: JSON and Slack payloads,
batching, a receiver that is down, one that is slow, one that fails then recovers, the
bounded queue, and a webhook URL's secret kept out of logs and errors."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from polyroute.alerts import Alerts, Webhook, payload, redact_url, summary
from polyroute.cli import cli
from polyroute.client import Polyroute
from polyroute.config import AlertConfig, Config, validate
from polyroute.errors import ConfigError
from polyroute.gateway._observe import Metrics
from polyroute.hub import (
    BreakerChanged,
    BudgetAlert,
    EventHub,
    Fallback,
    HealthChanged,
)
from polyroute.router.breaker import Breakers
from polyroute.testing import Fleet

SECRET_PATH = "/services/T0SECRET1/B0SECRET2/xoxSECRETxSECRETxSECRET"
OPEN = BreakerChanged("openai", "closed", "open", 5, 60.0)
UNWELL = HealthChanged("anthropic", "healthy", "unhealthy", "HTTP 401: bad key", "authentication")


class Receiver:
    """A webhook on loopback: records each POST; answers from ``script`` (status, delay_s),
    then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.script: list[tuple[int, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    status, delay = receiver.script.pop(0) if receiver.script else (200, 0.0)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}?token=s3cr3t"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[Any]:
        return [json.loads(b) for _, _, b in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


def spec(url: str, **kw: Any) -> AlertConfig:
    return AlertConfig(url=url, events=("breaker_changed", "health_changed"), **kw)


class Sleeps:
    """A recorded, instant sleep (retries' backoff without waiting)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_json_events_are_posted_in_one_batch(receiver: Receiver) -> None:
    w = Webhook(0, spec(receiver.url, batch_s=5, batch_max=2), receiver.url)
    hub = EventHub()
    Alerts([w]).attach(hub)
    hub.emit(OPEN)
    hub.emit(Fallback("openai", "m", "anthropic", "n", "timeout", "slow", None))  # not chosen
    hub.emit(UNWELL)  # the second: the batch is full, posted without waiting 5 s
    await w.aclose(grace_s=5)
    [(path, headers, _)] = receiver.posts
    assert path == SECRET_PATH + "?token=s3cr3t"
    assert headers["content-type"] == "application/json"
    [body] = receiver.bodies()
    assert [e["kind"] for e in body["events"]] == ["breaker_changed", "health_changed"]
    assert body["events"][0] == {
        "kind": "breaker_changed",
        "provider": "openai",
        "previous": "closed",
        "state": "open",
        "consecutive_failures": 5,
        "retry_in_s": 60.0,
        "remote": False,
    }
    assert (w.sent, w.failed, w.dropped) == (2, 0, {})


async def test_a_slack_payload_is_a_text_with_a_line_per_event(receiver: Receiver) -> None:
    w = Webhook(0, spec(receiver.url, format="slack", batch_s=0), receiver.url)
    alert = BudgetAlert("provider:openai", "daily", "2026-12-06", 90.0, 9.0, 10.0)
    w.kinds = frozenset({"breaker_changed", "budget_alert"})
    hub = EventHub()
    Alerts([w]).attach(hub)
    hub.emit_many([OPEN, alert])
    await w.aclose(grace_s=5)
    texts = [b["text"] for b in receiver.bodies()]
    assert "\n".join(texts).splitlines() == [
        "polyroute: circuit breaker of openai: closed -&gt; open after 5 failures, retry in 60s",
        "polyroute: budget provider:openai: 90% of the daily limit ($9.00 of $10.00, 2026-12-06)",
    ]
    assert all(set(b) == {"text"} for b in receiver.bodies())


async def test_a_receiver_that_is_down_is_retried_then_counted_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = closed_port_url()
    sleeps = Sleeps()
    w = Webhook(0, spec(url, retries=3, batch_s=0), url, sleep=sleeps)
    caplog.set_level(logging.DEBUG, logger="polyroute.alerts")
    w.offer(OPEN)  # returns at once: the posting happens in the webhook's task
    assert w.queued == 1
    await w.aclose(grace_s=5)
    assert (w.sent, w.failed) == (0, 1)
    # 4 tries; exponential backoff, each wait jittered between half and all of its step
    [d0, d1, d2] = sleeps.delays
    assert 0.25 <= d0 <= 0.5 and 0.5 <= d1 <= 1.0 and 1.0 <= d2 <= 2.0
    text = caplog.text
    assert "gave up on 1 events after 4 tries: cannot reach it (ConnectError)" in text
    assert "alerts[0] (http://127.0.0.1:" in text
    assert "SECRET" not in text and "services" not in text


async def test_a_500_then_200_is_delivered_once(receiver: Receiver) -> None:
    receiver.script = [(500, 0.0), (503, 0.0)]
    sleeps = Sleeps()
    w = Webhook(0, spec(receiver.url, batch_s=0), receiver.url, sleep=sleeps)
    w.offer(OPEN)
    await w.aclose(grace_s=5)
    assert [b["events"][0]["kind"] for b in receiver.bodies()] == ["breaker_changed"] * 3
    assert (w.sent, w.failed) == (1, 0)
    assert len(sleeps.delays) == 2


async def test_a_4xx_other_than_429_is_not_retried(receiver: Receiver) -> None:
    receiver.script = [(404, 0.0)]  # Slack's answer for a removed webhook
    w = Webhook(0, spec(receiver.url, batch_s=0), receiver.url, sleep=Sleeps())
    w.offer(OPEN)
    await w.aclose(grace_s=5)
    assert (len(receiver.posts), w.sent, w.failed) == (1, 0, 1)


async def test_a_slow_receiver_times_out_and_a_full_queue_drops_what_comes(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [(200, 1.0)]
    w = Webhook(0, spec(receiver.url, timeout_s=0.2, retries=0, max_queue=3), receiver.url)
    for _ in range(10):  # the task has not run yet: three fit, seven are dropped
        w.offer(OPEN)
    assert (w.queued, w.dropped) == (3, {"queue_full": 7})
    await w.aclose(grace_s=5)
    assert (w.sent, w.failed) == (0, 3)
    assert "no answer within 0.2s" in caplog.text and "SECRET" not in caplog.text


async def test_closing_drops_what_cannot_be_posted_within_the_grace(receiver: Receiver) -> None:
    receiver.script = [(200, 1.0)]
    w = Webhook(0, spec(receiver.url, timeout_s=5, batch_s=0), receiver.url)
    w.offer(OPEN)
    await asyncio.sleep(0.05)  # its post is in flight
    w.offer(UNWELL)
    await w.aclose(grace_s=0.1)
    assert (w.sent, w.failed, w.dropped) == (0, 0, {"shutdown": 2})
    w.offer(OPEN)  # closed: counted, not queued
    assert w.dropped == {"shutdown": 3} and w.queued == 0


async def test_polyroute_posts_a_fallback_and_metrics_count_it(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with Fleet(("openai", "anthropic"), reply="fine") as fleet:
        settings = fleet.settings(
            storage={"url": "sqlite://"},
            router={"retries_per_provider": 0},
            alerts=[{"url": "env:HOOK_URL", "events": ["fallback"], "batch_s": 0}],
        )
        env = {**fleet.env(), "HOOK_URL": receiver.url}
        pr = Polyroute(Config(validate(settings, "test.toml"), "test.toml", env))
        assert pr.alerts is not None
        metrics = Metrics(pr.breakers, pr.config.enabled, (), None, pr.alerts)
        first = pr.route("hi").provider
        fleet[first].script.fail_next(1, 503)
        await pr.complete("hi")
        await pr.aclose()
    [body] = receiver.bodies()
    [event] = body["events"]
    assert (event["kind"], event["from_provider"], event["status"]) == ("fallback", first, 503)
    scrape = generate_latest(metrics.registry).decode()
    assert 'polyroute_alerts_sent_total{alert="0"} 1.0' in scrape
    assert 'polyroute_alerts_dropped_total{alert="0",reason="queue_full"} 0.0' in scrape
    assert "SECRET" not in scrape + caplog.text


def test_a_webhook_url_is_never_repeated_by_a_config_error() -> None:
    with pytest.raises(ConfigError) as bad:
        validate({"alerts": [{"url": "ftp://u:pw@host/SECRET", "events": ["fallback"]}]}, "c")
    assert str(bad.value) == "c: alerts.0.url: must be an http(s) URL or env:NAME"
    with pytest.raises(ConfigError, match=r"alerts\.0\.events: no event kind 'fallbacks'"):
        validate({"alerts": [{"url": "https://h/x", "events": ["fallbacks"]}]}, "c")
    with pytest.raises(ConfigError, match=r"alerts\.0\.events"):
        validate({"alerts": [{"url": "https://h/x", "events": []}]}, "c")
    with pytest.raises(ConfigError, match=r"alerts\.0\.batchs: unknown key"):
        validate({"alerts": [{"url": "https://h/x", "events": ["fallback"], "batchs": 1}]}, "c")
    settings = validate({"alerts": [{"url": "env:HOOK", "events": ["fallback"]}]}, "c.toml")
    with pytest.raises(ConfigError) as unset:
        Alerts.from_config(Config(settings, "c.toml", {}))
    assert str(unset.value) == "c.toml: alerts.0.url: $HOOK is not set"
    with pytest.raises(ConfigError) as wrong:
        Alerts.from_config(Config(settings, "c.toml", {"HOOK": "hooks.slack.com" + SECRET_PATH}))
    assert str(wrong.value) == "c.toml: alerts.0.url: $HOOK is not an http(s) URL"


def test_redact_url_keeps_only_scheme_host_and_port() -> None:
    assert redact_url("https://hooks.slack.com" + SECRET_PATH) == "https://hooks.slack.com/***"
    assert redact_url("https://user:pw@example.com:8443/") == "https://example.com:8443/***"
    assert redact_url("http://example.com/?token=abc") == "http://example.com/***"
    assert redact_url("http://example.com") == "http://example.com/"
    assert redact_url("http://[::1:bad") == "(an invalid URL)"


def test_every_event_kind_has_a_summary_and_a_json_payload() -> None:
    for event in (OPEN, UNWELL, Fallback("a", "m", "b", "n", "rate_limit", "slow down", 429)):
        assert "\n" not in summary(event)
        [data] = json.loads(payload([event], "json"))["events"]
        assert data["kind"] == event.kind
    assert summary(UNWELL) == "anthropic is unhealthy (was healthy): HTTP 401: bad key"


def test_a_breakers_object_is_enough_for_metrics_without_alerts() -> None:
    metrics = Metrics(Breakers(validate({}, "c").router.circuit_breaker), lambda: ())
    assert "polyroute_alerts" not in generate_latest(metrics.registry).decode()


async def test_an_event_from_another_thread_is_handed_to_the_loop(receiver: Receiver) -> None:
    w = Webhook(0, spec(receiver.url, batch_s=0), receiver.url)
    alerts = Alerts([w])
    stranger = threading.Thread(target=alerts.on_event, args=(OPEN,))
    stranger.start()  # no loop seen yet: nowhere to post from
    stranger.join()
    assert w.dropped == {"no_loop": 1} and w.queued == 0
    alerts.on_event(UNWELL)  # on the loop: remembered
    stranger = threading.Thread(target=alerts.on_event, args=(OPEN,))
    stranger.start()
    stranger.join()
    await asyncio.sleep(0)  # the handed-over event is queued on the loop
    await alerts.aclose(grace_s=5)
    posted = [e["kind"] for b in receiver.bodies() for e in b["events"]]
    assert sorted(posted) == ["breaker_changed", "health_changed"]
    assert (w.sent, w.dropped) == (2, {"no_loop": 1})


async def test_another_replicas_change_is_not_posted_again(receiver: Receiver) -> None:
    w = Webhook(0, spec(receiver.url, batch_s=0), receiver.url)
    hub = EventHub()
    Alerts([w]).attach(hub)
    hub.emit(BreakerChanged("openai", "closed", "open", 5, 60.0, remote=True))
    hub.emit(HealthChanged("openai", "healthy", "unhealthy", "down", None, remote=True))
    hub.emit(OPEN)
    await w.aclose(grace_s=5)
    assert [e["remote"] for b in receiver.bodies() for e in b["events"]] == [False]


def test_cli_budget_changes_are_posted(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Fleet(("openai",)) as fleet:
        monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
        monkeypatch.setenv("HOOK_URL", receiver.url)
        config = tmp_path / "polyroute.toml"
        config.write_text(
            fleet.toml()
            + '\n[[alerts]]\nurl = "env:HOOK_URL"\nevents = ["budget_changed"]\nformat = "slack"\n'
        )
        for args in (
            ["budget", "set", "openai", "--daily", "5"],
            ["keys", "create", "--name", "ci", "--monthly-usd", "20"],
        ):
            r = CliRunner().invoke(cli, [*args, "--config", str(config)])
            assert r.exit_code == 0, r.output
    texts = [b["text"] for b in receiver.bodies()]
    assert texts[0] == "polyroute: budget provider:openai: daily limit none -&gt; $5.00 (set)"
    assert texts[1].startswith("polyroute: budget key:") and "$20.00 (key created)" in texts[1]
