"""The CLI against every vendor's simulator: answers, usage, cost, streaming, and every failure."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from polyroute.cli import cli
from polyroute.testing import SIMULATORS, Fleet

VENDORS = list(SIMULATORS)
KEY_HEADER = {
    "openai": ("authorization", "Bearer sim-key"),
    "mistral": ("authorization", "Bearer sim-key"),
    "anthropic": ("x-api-key", "sim-key"),
    "google": ("x-goog-api-key", "sim-key"),
}
PRICE = (2.0, 8.0)  # configured USD per Mtok, input and output, for every default model


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(reply="Routing is choosing well") as f:
        yield f


@pytest.fixture
def config(fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = tmp_path / "polyroute.toml"
    path.write_text(fleet.toml(price=PRICE))
    yield path
    for sim in fleet.sims.values():
        sim.script.recover()


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.mark.parametrize("vendor", VENDORS)
def test_ask_json_reports_reply_usage_cost_and_key_header(
    vendor: str, fleet: Fleet, config: Path
) -> None:
    r = invoke("ask", "what is routing?", "--provider", vendor, "--json", "--config", str(config))
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["content"] == "Routing is choosing well"
    assert out["provider"] == vendor
    usage = out["usage"]
    assert usage == {
        "prompt_tokens": 4,
        "completion_tokens": 6,
        "total_tokens": 10,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert out["cost_usd"] == pytest.approx((4 * PRICE[0] + 6 * PRICE[1]) / 1e6)
    assert out["attempts"][0]["ok"] is True and out["decision"]["provider"] == vendor
    headers = fleet[vendor].last_request().headers
    if vendor in KEY_HEADER:
        name, value = KEY_HEADER[vendor]
        assert headers[name] == value
        others = {h for h, _ in KEY_HEADER.values()} - {name}
        assert not others & set(headers)


@pytest.mark.parametrize("vendor", VENDORS)
def test_ask_stream_prints_the_same_text(vendor: str, config: Path) -> None:
    r = invoke("--config", str(config), "ask", "hi", "--provider", vendor, "--stream")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "Routing is choosing well"
    j = invoke("ask", "hi", "--provider", vendor, "--stream", "--json", "--config", str(config))
    assert json.loads(j.stdout)["usage"]["completion_tokens"] == 6


def test_prompt_from_stdin_and_system(fleet: Fleet, config: Path) -> None:
    r = invoke(
        "ask",
        "-",
        "--provider",
        "openai",
        "--system",
        "be terse",
        "--max-tokens",
        "50",
        "--config",
        str(config),
        input="from stdin\n",
    )
    assert r.exit_code == 0
    body = fleet["openai"].last_request().body
    assert body["messages"][0] == {"role": "system", "content": "be terse"}
    assert body["messages"][1]["content"] == "from stdin\n"


def test_empty_prompt_is_a_usage_error(config: Path) -> None:
    r = invoke("ask", "-", "--config", str(config), input="  \n")
    assert r.exit_code == 2


FAULTS = [400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 529]


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("status", FAULTS)
def test_every_status_is_one_line_and_exit_4(
    vendor: str, status: int, fleet: Fleet, config: Path
) -> None:
    fleet[vendor].script.fail_next(2, status)  # a transient one is retried once: fail both
    r = invoke("ask", "hi", "--provider", vendor, "--config", str(config))
    assert r.exit_code == 4
    lines = r.stderr.strip().splitlines()
    head = f"polyroute: error: no provider could serve the request: {vendor}/"
    assert len(lines) == 1 and lines[0].startswith(head) and f"HTTP {status}" in lines[0]
    assert "Traceback" not in r.stderr and "sim-key" not in r.stderr


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(
    ("fault", "expect"),
    [("garbage", "not JSON"), ("cut", "truncated"), ("drop", "stream broken")],
)
def test_broken_bodies_and_streams(
    vendor: str, fault: str, expect: str, fleet: Fleet, config: Path
) -> None:
    script = fleet[vendor].script
    if fault == "garbage":
        script.garbage_next(2)  # retried once, as a transient failure
    else:
        script.cut_stream(after_chunks=2, abort=fault == "drop")
    args = ["ask", "hi", "--provider", vendor, "--config", str(config)]
    r = invoke(*args, *(["--stream"] if fault != "garbage" else []))
    assert r.exit_code == 4
    last = r.stderr.strip().splitlines()[-1]
    # garbage: retried, then every attempt listed; a cut after content: that error, at once
    who = f"{vendor}/" if fault == "garbage" else f"polyroute: error: {vendor}: "
    assert last.startswith("polyroute: error: ") and who in last and expect in last
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("vendor", VENDORS)
def test_timeout_is_clear(vendor: str, fleet: Fleet, config: Path) -> None:
    text = config.read_text().replace(
        f'[providers."{vendor}"]\n', f'[providers."{vendor}"]\ntimeout_s = 0.3\n'
    )
    config.write_text(text)
    fleet[vendor].script.hang_next(1.0, n=2)
    r = invoke("ask", "hi", "--provider", vendor, "--config", str(config))
    assert r.exit_code == 4 and "no answer within 0.3s" in r.stderr


@pytest.mark.parametrize("vendor", VENDORS)
def test_connection_refused_is_clear(vendor: str, fleet: Fleet, config: Path) -> None:
    text = config.read_text().replace(fleet[vendor].root_url, "http://127.0.0.1:9")
    config.write_text(text)
    r = invoke("ask", "hi", "--provider", vendor, "--config", str(config))
    assert r.exit_code == 4 and "cannot reach http://127.0.0.1:9" in r.stderr


def test_debug_adds_the_traceback(fleet: Fleet, config: Path) -> None:
    fleet["anthropic"].script.fail_next(2, 529)
    r = invoke("ask", "hi", "--provider", "anthropic", "--config", str(config), "--debug")
    assert r.exit_code == 4 and "Traceback" in r.stderr and "OverloadedError" in r.stderr


def test_unknown_provider_is_a_config_error(config: Path) -> None:
    r = invoke("ask", "hi", "--provider", "nope", "--config", str(config))
    assert r.exit_code == 2 and "no provider 'nope'" in r.stderr


def test_models_providers_health_json(fleet: Fleet, config: Path) -> None:
    models = json.loads(invoke("models", "--json", "--config", str(config)).stdout)
    assert {"provider_type", "model", "input_usd_per_mtok", "priced", "price_source"} <= set(
        models[0]
    )
    prov = json.loads(invoke("providers", "--json", "--config", str(config)).stdout)
    assert {p["id"] for p in prov["providers"]} == set(VENDORS)
    assert all(p["key"] in ("set", "none") for p in prov["providers"])
    h = invoke("health", "--json", "--config", str(config))
    assert h.exit_code == 0 and all(c["ok"] for c in json.loads(h.stdout))
    config.write_text(config.read_text().replace(fleet["google"].root_url, "http://127.0.0.1:9"))
    h = invoke("health", "--json", "--config", str(config))
    bad = [c for c in json.loads(h.stdout) if not c["ok"]]
    assert h.exit_code == 1 and [c["provider"] for c in bad] == ["google"]


def test_real_process_failure_has_no_traceback(fleet: Fleet, config: Path) -> None:
    fleet["openai"].script.fail_next(2, 500)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "polyroute",
            "ask",
            "hi",
            "--provider",
            "openai",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 4, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_route_prints_the_decision_without_calling(fleet: Fleet, config: Path) -> None:
    calls = {v: fleet[v].calls for v in VENDORS}
    r = invoke("route", "hi", "--priority", "cost", "--json", "--config", str(config))
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert {
        "strategy",
        "provider",
        "model",
        "reasoning",
        "estimated_cost_usd",
        "fallbacks",
        "confidence",
        "excluded",
        "estimated_cost_basis",
    } <= set(d)
    assert d["strategy"] == "cost" and d["provider"] == "ollama"  # free wins on cost
    assert {v: fleet[v].calls for v in VENDORS} == calls
    table = invoke("route", "hi", "--require", "vision", "--config", str(config))
    assert table.exit_code == 0 and "lacks capability vision" in table.stdout


def test_routing_flags_reach_the_decision(fleet: Fleet, config: Path) -> None:
    r = invoke(
        "ask",
        "hi",
        "--priority",
        "quality",
        "--complexity",
        "simple",
        "--max-cost",
        "1",
        "--json",
        "--config",
        str(config),
    )
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"]["strategy"] == "quality"
    assert out["attempts"][0]["ok"] and out["provider"] == out["decision"]["provider"]
    # nothing fits: exit 4 with every exclusion named
    r = invoke("ask", "hi", "--max-cost", "0", "--require", "embeddings", "--config", str(config))
    assert r.exit_code == 4
    assert "no provider can serve this request" in r.stderr


def test_a_failing_provider_falls_back_and_lists_attempts(fleet: Fleet, config: Path) -> None:
    fleet["ollama"].script.fail_always(500)
    r = invoke("ask", "hi", "--priority", "cost", "--json", "--config", str(config))
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert [a["ok"] for a in out["attempts"]] == [False, False, True]
    assert out["attempts"][0]["provider"] == "ollama" and out["provider"] != "ollama"


@pytest.mark.parametrize("command", ["ask", "route"])
def test_nothing_configured_says_how_to_configure(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No config file, no vendor key (conftest clears them), no Ollama: a config error (2)."""
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("OLLAMA_HOST", closed)
    r = invoke(command, "hi")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("polyroute: error: nothing is configured")
    assert str(Path.cwd() / "polyroute.toml") in lines[0]
    assert str(tmp_path / "xdg" / "polyroute" / "config.toml") in lines[0]
    assert f"no Ollama at {closed}" in lines[0]
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY"):
        assert f"${name}" in lines[1]
    assert "--config" in lines[1] and r.stdout == ""
