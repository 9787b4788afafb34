"""Provider and strategy plugins: the example package ``polyroute-cohere`` (examples/),
installed in the test environment, driven through the CLI; discovery errors; laziness."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from polyroute_cohere import CohereProtocol
from polyroute_cohere.simulator import TEMPLATE_TOKENS, CohereSimulator

from polyroute._plugins import installed
from polyroute.cli import cli
from polyroute.config import load, validate
from polyroute.errors import ConfigError, PluginError, UnsupportedError
from polyroute.providers import _plugin_protocol, protocol_for
from polyroute.router.strategies import load_strategy
from polyroute.types import ChatRequest, Message, Reasoning


@pytest.fixture(scope="module")
def sim() -> Iterator[CohereSimulator]:
    with CohereSimulator(reply="Cohere answers well") as s:
        yield s


def write_config(path: Path, sim: CohereSimulator, extra: str = "") -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            {extra}
            [providers.cohere-1]
            type = "cohere"
            base_url = "{sim.base_url}"
            api_key = "env:COHERE_TEST_KEY"
            default_model = "command-a-03-2025"
            models = ["command-a-03-2025", "command-r7b-12-2024"]
            """
        )
    )
    return path


@pytest.fixture
def config(sim: CohereSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("COHERE_TEST_KEY", "sim-key")
    yield write_config(tmp_path / "polyroute.toml", sim)
    sim.script.recover()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path where a test writes ``*.dist-info`` of fake packages."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    installed.cache_clear()
    before = set(sys.modules)
    yield site
    installed.cache_clear()
    _plugin_protocol.cache_clear()
    for name in set(sys.modules) - before:  # the fake packages' modules
        del sys.modules[name]


def fake_dist(site: Path, name: str, entry_points: str, module: str | None = None) -> None:
    info = site / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module is not None:
        (site / f"{name.replace('-', '_')}.py").write_text(textwrap.dedent(module))


# -- the CLI on the plugin's simulator ---------------------------------------------------


def test_ask_through_the_plugin_with_its_catalog_price(sim: CohereSimulator, config: Path) -> None:
    r = invoke(
        "ask", "what is routing?", "--provider", "cohere-1", "--json", "--config", str(config)
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["content"] == "Cohere answers well"
    req = sim.last_request()
    assert req.path == "/v2/chat" and req.headers["authorization"] == "Bearer sim-key"
    assert req.body["model"] == "command-a-03-2025" and req.body["stream"] is False
    assert req.body["messages"] == [{"role": "user", "content": "what is routing?"}]
    # billed units (4 in, 5 out), not the tokens seen (the prompt template's added)
    usage = out["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (4, 5)
    assert TEMPLATE_TOKENS > 0
    assert out["cost_usd"] == pytest.approx((4 * 2.5 + 5 * 10.0) / 1e6)  # the plugin's prices
    assert out["provider"] == "cohere-1" and out["model"] == "command-a-03-2025"


def test_ask_streams_through_the_plugin(sim: CohereSimulator, config: Path) -> None:
    r = invoke("ask", "hi", "--provider", "cohere-1", "--stream", "--config", str(config))
    assert r.exit_code == 0, r.output
    assert "Cohere answers well" in r.stdout
    assert sim.last_request().body["stream"] is True


def test_a_vendor_error_is_one_line(sim: CohereSimulator, config: Path) -> None:
    sim.script.fail_always(429)
    r = CliRunner().invoke(cli, ["ask", "hi", "--provider", "cohere-1", "--config", str(config)])
    assert r.exit_code == 4
    assert "rate limit" in r.output.lower() and "Traceback" not in r.output


def test_models_lists_the_plugin_catalog(config: Path) -> None:
    rows = json.loads(
        invoke("models", "--json", "--type", "cohere", "--config", str(config)).stdout
    )
    prices = {m["model"]: (m["input_usd_per_mtok"], m["output_usd_per_mtok"]) for m in rows}
    assert prices == {"command-a-03-2025": (2.5, 10.0), "command-r7b-12-2024": (0.0375, 0.15)}
    assert all(m["price_source"] == "catalog" for m in rows)


def test_health_lists_models_through_the_plugin(config: Path) -> None:
    r = invoke("health", "--json", "--config", str(config))
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["ok"]


def test_providers_types_lists_builtins_and_the_plugin() -> None:
    out = json.loads(invoke("providers", "--types", "--json").stdout)
    types = {t["name"]: t for t in out["types"]}
    assert {"openai", "anthropic", "google", "ollama", "mistral", "cohere"} <= set(types)
    assert types["openai"]["source"] == "built-in" and types["openai"]["version"] is None
    assert types["cohere"]["source"] == "polyroute-cohere"
    assert types["cohere"]["version"] == "0.1.0"
    assert types["cohere"]["base_url"] == "https://api.cohere.com"
    strategies = {s["name"]: s for s in out["strategies"]}
    assert strategies["balanced"]["source"] == "built-in"
    assert strategies["frugal"]["target"] == "polyroute_cohere:FrugalStrategy"
    text = invoke("providers", "--types").stdout
    assert "polyroute-cohere 0.1.0" in text and "frugal" in text


# -- the adapter refuses what it cannot carry ---------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 2), ("reasoning", Reasoning(effort="low")), ("tool_choice", "get_weather")],
)
def test_fields_cohere_cannot_carry_are_refused_by_name(field: str, value: object) -> None:
    request = ChatRequest("command-a-03-2025", [Message("user", "hi")], **{field: value})  # type: ignore[arg-type]
    with pytest.raises(UnsupportedError, match="cohere cannot take"):
        CohereProtocol().chat(request, stream=False)


def test_cohere_error_bodies_read_as_typed_kinds() -> None:
    p = CohereProtocol()
    assert p.parse_error(400, {"message": "too many tokens: 300000"}).kind == "context_length"
    assert p.parse_error(402, {"message": "blocked"}).kind == "quota"
    assert p.parse_error(500, "oops").message == "oops"


# -- strategies ----------------------------------------------------------------------------


def test_an_installed_strategy_routes_by_its_name(
    sim: CohereSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COHERE_TEST_KEY", "sim-key")
    path = write_config(tmp_path / "p.toml", sim, '[router]\nstrategy = "frugal"\n')
    r = invoke("route", "hello", "--json", "--config", str(path))
    assert r.exit_code == 0, r.output
    decision = json.loads(r.stdout)
    assert decision["strategy"] == "frugal"
    assert decision["model"] == "command-r7b-12-2024"  # the cheaper of the two
    assert decision["reasoning"].startswith("frugal:")


def test_an_unknown_strategy_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"installed: frugal"):
        validate({"router": {"strategy": "nope"}}, "test")
    with pytest.raises(ConfigError, match=r"installed strategy \(frugal\)"):
        load_strategy("nope")


def test_a_broken_strategy_plugin_names_itself(fake_plugins: Path) -> None:
    fake_dist(fake_plugins, "broken-strategy", "[polyroute.strategies]\nbad = missing_mod:X\n")
    validate({"router": {"strategy": "bad"}}, "test")  # the name exists: loading is later
    with pytest.raises(
        PluginError, match=r"broken-strategy 1\.2\.3 \(entry point polyroute\.strategies: bad\)"
    ):
        load_strategy("bad")


# -- discovery errors ----------------------------------------------------------------------


def test_an_unknown_type_lists_builtins_and_installed() -> None:
    with pytest.raises(ConfigError) as e:
        validate({"providers": {"x": {"type": "cohear"}}}, "test")
    assert "built-in: anthropic, google, mistral, ollama, openai, openai-compatible" in str(e.value)
    assert "installed: cohere" in str(e.value)


def test_a_broken_provider_plugin_is_a_clear_error_naming_it(
    fake_plugins: Path, tmp_path: Path, config: Path
) -> None:
    fake_dist(fake_plugins, "polyroute-broken", "[polyroute.providers]\nbroken = polyroute_broken:P\n",
              module="import no_such_dependency\n")  # fmt: skip
    with pytest.raises(PluginError) as e:
        protocol_for("broken")
    msg = str(e.value)
    assert "polyroute-broken 1.2.3 (entry point polyroute.providers: broken)" in msg
    assert "ModuleNotFoundError" in msg and "no_such_dependency" in msg
    # a command using it says so (exit 2, one line); listing types shows it, and goes on
    path = tmp_path / "b.toml"
    path.write_text('[providers.b]\ntype = "broken"\nbase_url = "http://127.0.0.1:9"\n')
    r = CliRunner().invoke(cli, ["ask", "hi", "--provider", "b", "--config", str(path)])
    assert r.exit_code == 2 and "polyroute-broken 1.2.3" in r.output and "Traceback" not in r.output
    listing = invoke("providers", "--types", "--json")
    assert listing.exit_code == 0
    rows = {t["name"]: t for t in json.loads(listing.stdout)["types"]}
    assert "no_such_dependency" in rows["broken"]["error"] and rows["cohere"]["error"] is None
    # a config that does not use it works as if it were not installed
    ok = invoke("ask", "hi", "--provider", "cohere-1", "--config", str(config))
    assert ok.exit_code == 0 and "Cohere answers well" in ok.stdout


@pytest.mark.parametrize(
    ("module", "why"),
    [
        ("class P:\n    type = 'wrong'\n", "is not a WireProtocol subclass"),
        (
            "from polyroute.providers import WireProtocol\n"
            "class P(WireProtocol):\n    type = 'other'\n",
            "not the entry point's name 'wrongtype'",
        ),
        (
            "from polyroute.providers import WireProtocol\n"
            "class P(WireProtocol):\n    type = 'wrongtype'\n",
            "does not implement chat, headers",
        ),
    ],
)
def test_a_plugin_that_is_not_a_protocol_is_refused(
    fake_plugins: Path, module: str, why: str
) -> None:
    fake_dist(fake_plugins, "polyroute-wrongtype",
              "[polyroute.providers]\nwrongtype = polyroute_wrongtype:P\n", module=module)  # fmt: skip
    with pytest.raises(PluginError, match=why):
        protocol_for("wrongtype")


def test_a_plugin_shadowing_a_builtin_is_listed_and_unused(fake_plugins: Path) -> None:
    fake_dist(fake_plugins, "polyroute-shadow", "[polyroute.providers]\nopenai = nowhere:X\n")
    assert type(protocol_for("openai")).__module__ == "polyroute.providers.openai"
    rows = json.loads(invoke("providers", "--types", "--json").stdout)["types"]
    shadow = [t for t in rows if t["source"] == "polyroute-shadow"]
    assert len(shadow) == 1 and "ignored" in shadow[0]["error"]


# -- laziness -------------------------------------------------------------------------------


def test_import_and_builtin_use_read_no_entry_points() -> None:
    """`import polyroute`, a config of built-in types and its strategy, and the request
    path's protocol lookup never read entry points nor import a plugin."""
    code = textwrap.dedent(
        """
        import importlib.metadata as md, sys
        calls = []
        real = md.entry_points
        md.entry_points = lambda **kw: (calls.append(kw.get("group")), real(**kw))[1]
        import polyroute
        from polyroute.config import Config, validate
        from polyroute.providers import protocol_for
        from polyroute.router.strategies import load_strategy
        s = validate({"providers": {"o": {"type": "openai", "api_key": "env:K"}}}, "t")
        Config(s, "t", {"K": "k"}).catalog()
        protocol_for("openai"); load_strategy("cost")
        polyroute.Polyroute  # the lazy facade
        ours = [g for g in calls if str(g).startswith("polyroute")]  # pydantic reads its own
        assert not ours, ours
        assert "polyroute_cohere" not in sys.modules
        print("ok")
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_plugin_catalog_is_read_only_for_configured_plugin_types(config: Path) -> None:
    catalog = load(config).catalog()
    assert catalog.get("cohere", "command-a-03-2025").price is not None
    builtin_only = validate({"providers": {"o": {"type": "openai"}}}, "t")
    from polyroute.config import Config

    assert not Config(builtin_only, "t", {}).catalog().for_type("cohere")


def test_a_local_plugin_type_is_free_and_local(
    fake_plugins: Path, sim: CohereSimulator, tmp_path: Path
) -> None:
    """``WireProtocol.local``: a plugin for a server on this machine is priced as Ollama is."""
    fake_dist(fake_plugins, "polyroute-onbox", "[polyroute.providers]\nonbox = polyroute_onbox:P\n",
              module="""
                  from polyroute_cohere import CohereProtocol
                  class P(CohereProtocol):
                      type = "onbox"
                      local = True
                      catalog_models = ()
              """)  # fmt: skip
    path = tmp_path / "l.toml"
    path.write_text(
        f'[providers.box]\ntype = "onbox"\nbase_url = "{sim.base_url}"\n'
        'models = ["command-r7b-12-2024"]\n'
        f'[providers.remote]\ntype = "cohere"\nbase_url = "{sim.base_url}"\nenabled = false\n'
    )
    config = load(path)
    entry = config.catalog().get("onbox", "command-r7b-12-2024")
    assert entry.price is not None and entry.price.source == "local" and entry.price.input == 0
    decision = json.loads(invoke("route", "hi", "--json", "--config", str(path)).stdout)
    assert decision["provider"] == "box" and decision["estimated_cost_usd"] == 0
    assert config.catalog().local_types == {"ollama", "onbox"}  # cohere is not local


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logprobs", True),
        ("parallel_tool_calls", False),
        ("metadata", {"team": "a"}),
        ("store", True),
        ("service_tier", "auto"),
        ("logit_bias", {"42": 1.0}),
        ("betas", ("files-api",)),
    ],
)
def test_more_fields_are_refused_by_name(field: str, value: object) -> None:
    request = ChatRequest("command-a-03-2025", [Message("user", "hi")], **{field: value})  # type: ignore[arg-type]
    with pytest.raises(UnsupportedError, match=f"cohere cannot take {field}"):
        CohereProtocol().chat(request, stream=False)


def test_a_document_part_is_refused_by_name() -> None:
    from polyroute.types import DocumentPart, TextPart

    message = Message("user", (TextPart("read"), DocumentPart(url="https://x/a.pdf")))
    with pytest.raises(UnsupportedError, match="cannot take a document part"):
        CohereProtocol().chat(ChatRequest("command-a-03-2025", [message]), stream=False)


def test_stream_decoder_errors() -> None:
    from polyroute.errors import APIStatusError, InvalidResponseError

    decoder = CohereProtocol().stream_decoder(ChatRequest("m", [Message("user", "hi")]))
    assert decoder.feed("[DONE]", None) == ()
    with pytest.raises(InvalidResponseError, match="not JSON"):
        decoder.feed("<html>", "content-delta")
    end = {"type": "message-end", "delta": {"error": "model overloaded"}}
    with pytest.raises(APIStatusError, match="model overloaded") as e:
        decoder.feed(json.dumps(end), "message-end")
    assert e.value.status == 500 and not decoder.done


def test_a_cut_stream_is_a_truncation_not_an_answer(sim: CohereSimulator, config: Path) -> None:
    sim.script.cut_stream(after_chunks=1)
    r = CliRunner().invoke(
        cli, ["ask", "hi", "--provider", "cohere-1", "--stream", "--config", str(config)]
    )
    assert r.exit_code == 4 and "truncated" in r.output


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"model": "command-a-03-2025", "messages": [], "n": 2}, "unknown field: n"),
        ({"model": "command-a-03-2025", "messages": []}, "non-empty"),
        ({"model": "command-a-03-2025", "messages": [{"role": "bot", "content": "x"}]}, "role"),
        ({"model": "command-a-03-2025", "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"model": "command-a-03-2025", "messages": [{"role": "user", "content": "x"}], "tool_choice": "AUTO"}, "REQUIRED or NONE"),
        ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, "not found"),
    ],
)  # fmt: skip
def test_the_simulator_refuses_what_cohere_refuses(
    sim: CohereSimulator, body: dict[str, object], why: str
) -> None:
    import httpx

    r = httpx.post(
        f"{sim.base_url}/v2/chat", json=body, headers={"authorization": "Bearer sim-key"}
    )
    assert r.status_code == 400 and why in r.json()["message"]
    bad_key = httpx.post(f"{sim.base_url}/v2/chat", json=body, headers={"authorization": "x"})
    assert bad_key.status_code == 401


def test_plugin_catalog_entries_of_another_type_are_refused(fake_plugins: Path) -> None:
    fake_dist(fake_plugins, "polyroute-mixed", "[polyroute.providers]\nmixed = polyroute_mixed:P\n",
              module="""
                  from polyroute_cohere import CohereProtocol
                  class P(CohereProtocol):
                      type = "mixed"
              """)  # fmt: skip
    from polyroute.providers import plugin_catalog

    with pytest.raises(
        PluginError,
        match=r"polyroute-mixed 1\.2\.3 \(entry point polyroute\.providers: mixed\): catalog "
        r"model 'command-a-03-2025' is of type 'cohere', not 'mixed'",
    ):
        plugin_catalog(["mixed"])


def test_a_documented_tool_stream_decodes() -> None:
    """The event sequence of Cohere's tool-use streaming guide (plan, call, citations),
    as the SDK's ``V2ChatStreamResponse`` types name it."""
    from polyroute.events import StreamEnd, StreamStart, ToolCallDelta

    call = {"id": "get_weather_776n8ctsgycn", "type": "function"}
    events = [
        {"id": "29f14a5a", "type": "message-start", "delta": {"message": {"role": "assistant"}}},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will look it up"}}},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
            **call, "function": {"name": "get_weather", "arguments": ""}}}}},
        {"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": '{"location":'}}}}},
        {"type": "tool-call-delta", "index": 0,
         "delta": {"message": {"tool_calls": {"function": {"arguments": '"Toronto"}'}}}}},
        {"type": "tool-call-end", "index": 0},
        {"type": "citation-start", "index": 0, "delta": {"message": {"citations": {}}}},
        {"type": "citation-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {
            "billed_units": {"input_tokens": 37, "output_tokens": 28},
            "tokens": {"input_tokens": 913, "output_tokens": 81}, "cached_tokens": 12.0}}},
    ]  # fmt: skip
    decoder = CohereProtocol().stream_decoder(ChatRequest("command-a-03-2025", []))
    out = [e for ev in events for e in decoder.feed(json.dumps(ev), ev["type"])]
    assert decoder.done
    assert out[0] == StreamStart("29f14a5a", "command-a-03-2025")
    calls = [e for e in out if isinstance(e, ToolCallDelta)]
    assert calls[0].id == call["id"] and calls[0].name == "get_weather"
    assert "".join(c.arguments for c in calls) == '{"location":"Toronto"}'
    end = out[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "tool_calls"
    assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (37, 28)
    assert end.usage.cached_tokens == 12 and end.raw_finish_reason == "TOOL_CALL"
    assert len(out) == 5  # the plan and the citations are not answer text


def test_a_documented_answer_parses() -> None:
    """A ``V2ChatResponse`` as Cohere's chat reference shows it: content blocks, no model."""
    body = {
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "finish_reason": "COMPLETE",
        "message": {
            "role": "assistant",
            "content": [{"type": "text", "text": "LLMs are "}, {"type": "text", "text": "big."}],
            "citations": [],
        },
        "usage": {
            "billed_units": {"input_tokens": 5, "output_tokens": 7},
            "tokens": {"input_tokens": 71, "output_tokens": 7},
        },
    }
    r = CohereProtocol().parse_chat(body)
    assert (r.content, r.model, r.finish_reason, r.raw_finish_reason) == (
        "LLMs are big.",
        "",
        "stop",
        "COMPLETE",
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.tool_calls) == (5, 7, ())
