"""Hooks through the library: ``[hooks] enabled`` with the built-in redact hook and the
example plugin (examples/polyroute-hook-example, installed into the test environment
through its ``polyroute.hooks`` entry points)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import ConfigError, HookError, HookRefusal, PluginError
from polyroute.events import TextDelta
from polyroute.hooks import HookedExecutor
from polyroute.router.executor import Executor
from polyroute.testing import Fleet
from polyroute.types import ChatRequest, EmbeddingRequest, Message

SECRET_TEXT = "mail jane.doe@example.com, key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_-Q7"
MASKED_TEXT = "mail [REDACTED:email], key [REDACTED:openai_key]"


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai", "anthropic"), reply="the answer is +1 415 555 0100, ok") as f:
        yield f


def client(fleet: Fleet, **hooks: Any) -> Polyroute:
    settings = fleet.settings(storage={"url": "sqlite://"}, health={"interval_s": 0}, hooks=hooks)
    return Polyroute(Config(validate(settings, "test"), "test", fleet.env()))


@pytest.fixture
async def closing() -> AsyncIterator[list[Polyroute]]:
    made: list[Polyroute] = []
    yield made
    for pr in made:
        await pr.aclose()


def request(text: str) -> ChatRequest:
    return ChatRequest("", (Message.system("be brief"), Message.user(text)), max_tokens=50)


def sent_text(fleet: Fleet, provider: str = "openai") -> str:
    """The last user message the upstream received."""
    body = fleet[provider].last_request().body
    return str(body["messages"][-1]["content"])


async def test_a_rewrite_reaches_the_upstream_in_order(
    fleet: Fleet, closing: list[Polyroute]
) -> None:
    """redact, then the plugin's suffix (its option from [hooks.example-suffix]); streamed
    too, where the request is hooked when the stream starts."""
    pr = client(fleet, enabled=["redact", "example-suffix"], **{"example-suffix": {"suffix": "!"}})
    closing.append(pr)
    assert isinstance(pr.executor, HookedExecutor)
    await pr.send(request(SECRET_TEXT), provider="openai")
    assert sent_text(fleet) == MASKED_TEXT + "!"
    stream = pr.send_stream(request(SECRET_TEXT + " again"), provider="openai")
    assert fleet["openai"].calls == 1  # nothing sent before the stream is iterated
    async for _ in stream:
        pass
    assert sent_text(fleet) == MASKED_TEXT + " again!"
    assert stream.answer is not None and stream.attempts and stream.target is not None


async def test_a_refusal_names_the_hook_and_its_reason_and_calls_nobody(
    fleet: Fleet, closing: list[Polyroute]
) -> None:
    pr = client(fleet, enabled=["redact", "example-blocklist"])
    closing.append(pr)
    for call in (
        lambda: pr.send(request("a forbidden topic"), provider="openai"),
        lambda: _drain(pr.send_stream(request("a forbidden topic"), provider="openai")),
    ):
        with pytest.raises(HookRefusal) as info:
            await call()
        assert info.value.hook == "example-blocklist"
        assert str(info.value) == (
            "refused by hook example-blocklist: the request mentions 'forbidden', "
            "which is not allowed here"
        )
    assert fleet["openai"].calls == 0


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_a_slow_hook_times_out_and_nothing_is_sent(
    fleet: Fleet, closing: list[Polyroute]
) -> None:
    """example-slow sleeps an hour: the request fails at [hooks] timeout_s, unsent."""
    pr = client(fleet, enabled=["example-slow"], timeout_s=0.05)
    closing.append(pr)
    with pytest.raises(HookError) as info:
        await pr.send(request("hi"), provider="openai")
    assert str(info.value) == "hook example-slow failed: pre_request gave no answer within 0.05 s"
    assert info.value.hook == "example-slow"
    with pytest.raises(HookError):
        await _drain(pr.send_stream(request("hi"), provider="openai"))
    assert fleet["openai"].calls == 0


async def test_a_crashing_hook_fails_the_request_naming_it(
    fleet: Fleet, closing: list[Polyroute], caplog: pytest.LogCaptureFixture
) -> None:
    pr = client(fleet, enabled=["redact", "example-crash"])
    closing.append(pr)
    with pytest.raises(HookError) as info:
        await pr.send(request("hi"), provider="openai")
    assert str(info.value) == "hook example-crash failed: pre_request raised RuntimeError"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "the example hook crashed" in caplog.text  # the detail goes to the log
    assert fleet["openai"].calls == 0


async def test_post_response_hooks_see_answers_whole_and_streamed(
    fleet: Fleet, closing: list[Polyroute]
) -> None:
    """redact with responses = true masks the phone number the upstream streams word by
    word (split across four chunks); example-upper then upper-cases each chunk."""
    pr = client(fleet, enabled=["redact", "example-upper"], redact={"responses": True})
    closing.append(pr)
    answer = await pr.send(request("hi"), provider="openai")
    assert answer.content == "THE ANSWER IS [REDACTED:PHONE], OK"
    assert answer.response is not None and answer.response.content == answer.content
    stream = pr.send_stream(request("hi"), provider="anthropic")
    chunks = [e.text async for e in stream if isinstance(e, TextDelta)]
    assert "".join(chunks) == "THE ANSWER IS [REDACTED:PHONE], OK"
    assert not any("415" in c or "0100" in c for c in chunks)
    assert len(chunks) > 2  # still streamed, not held to the end
    assert stream.answer is not None and stream.answer.content == "".join(chunks)
    assert stream.cost_usd is not None or stream.answer.cost_usd is None


async def test_answers_are_untouched_without_responses(
    fleet: Fleet, closing: list[Polyroute]
) -> None:
    pr = client(fleet, enabled=["redact"])
    closing.append(pr)
    answer = await pr.send(request("hi"), provider="openai")
    assert answer.content == "the answer is +1 415 555 0100, ok"


async def test_fusion_members_and_embeddings_are_hooked(
    fleet: Fleet, closing: list[Polyroute]
) -> None:
    """What leaves in a fusion (each member's request) and an embeddings call is redacted;
    with responses = true, so is the fused answer."""
    pr = client(fleet, enabled=["redact"], redact={"responses": True})
    closing.append(pr)
    fused = await pr.fuse(SECRET_TEXT, providers=["openai", "anthropic"], max_tokens=50)
    assert sent_text(fleet, "openai") == MASKED_TEXT
    anthropic_body = fleet["anthropic"].last_request().body
    assert json.dumps(anthropic_body).count("REDACTED") == 2
    assert "jane" not in json.dumps(anthropic_body)
    assert fused.result == "the answer is [REDACTED:phone], ok"
    await pr.embed(EmbeddingRequest("text-embedding-3-small", ("call +1 415 555 0100",)))
    assert fleet["openai"].last_request().body["input"] == ["call [REDACTED:phone]"]


async def test_hook_names_and_plugins_are_checked_clearly(
    fleet: Fleet, closing: list[Polyroute]
) -> None:
    """An unknown name lists what is installed; a broken entry point is a PluginError
    naming its package and entry point, raised when requests need the hooks, so other
    commands (usage here) still work; bad plugin options are named."""
    pr = client(fleet, enabled=["no-such-hook"])
    closing.append(pr)
    with pytest.raises(ConfigError) as info:
        await pr.send(request("hi"))
    assert str(info.value) == (
        "test: hooks.enabled: no hook named 'no-such-hook' (built-in: redact; installed: "
        "example-blocklist, example-crash, example-missing, example-slow, example-suffix, "
        "example-upper)"
    )
    broken = client(fleet, enabled=["example-missing"])
    closing.append(broken)
    await broken.usage()
    with pytest.raises(PluginError) as plugin:
        await broken.send(request("hi"))
    assert str(plugin.value).startswith(
        "plugin polyroute-hook-example 0.1.0 (entry point polyroute.hooks: example-missing) "
        "= 'polyroute_hook_example:NoSuchHook' cannot be loaded: AttributeError"
    )
    bad = client(fleet, enabled=["example-suffix"], **{"example-suffix": {"colour": "red"}})
    closing.append(bad)
    with pytest.raises(PluginError, match=r"cannot be made with \[hooks.example-suffix\]"):
        await bad.send(request("hi"))
    assert fleet["openai"].calls == fleet["anthropic"].calls == 0


@pytest.mark.parametrize(
    ("hooks", "why"),
    [
        ({"enabled": ["x"], "y": {"a": 1}}, "hooks: Value error, y: options of a hook not in"),
        ({"enabled": ["redact", "redact"]}, "enabled: a hook is listed twice"),
        ({"enabled": [], "colour": "red"}, "colour: unknown key"),
        ({"timeout_s": 0}, "hooks.timeout_s: "),
        ({"redact": {"answers": True}}, "hooks.redact.answers: unknown key"),
    ],
)
def test_bad_hooks_config_is_refused_by_name(hooks: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate({"hooks": hooks}, "f.toml")
    assert why.removeprefix("hooks: Value error, ") in str(info.value)
    assert str(info.value).startswith("f.toml: hooks")


def test_with_no_hook_enabled_no_hook_code_runs(fleet: Fleet) -> None:
    """The executor is the plain one, and polyroute.hooks is never even imported (a fresh
    interpreter sends a request, a stream and a fusion)."""
    script = f"""
import asyncio, sys
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.router.executor import Executor
settings = {fleet.settings(storage={"url": "sqlite://"}, health={"interval_s": 0})!r}
async def main():
    async with Polyroute(Config(validate(settings, "t"), "t", {fleet.env()!r})) as pr:
        await pr.complete("hi", provider="openai")
        async for _ in pr.stream("hi", provider="openai"):
            pass
        await pr.fuse("hi", providers=["openai", "anthropic"])
        assert type(pr.executor) is Executor and pr.hooks is None
    print("polyroute.hooks" in sys.modules)
asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
    assert isinstance(Executor, type)


async def test_hooks_wrap_a_traced_executor(fleet: Fleet) -> None:
    """With tracing on, the hooked executor views the traced one: spans as without hooks,
    the upstream sees the hooked request, streamed answers are filtered."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from polyroute.telemetry import Telemetry

    exporter = InMemorySpanExporter()
    settings = fleet.settings(
        storage={"url": "sqlite://"},
        health={"interval_s": 0},
        hooks={"enabled": ["redact"], "redact": {"responses": True}},
    )
    config = Config(validate(settings, "test"), "test", fleet.env())
    telemetry = Telemetry.exporting(exporter, batch=False)
    async with Polyroute(config, telemetry=telemetry) as pr:
        await pr.send(request(SECRET_TEXT), provider="openai")
        stream = pr.send_stream(request("hi"), provider="openai")
        text = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
    assert sent_text(fleet) == "hi" and text == "the answer is [REDACTED:phone], ok"
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["chat gpt-4o-mini", "chat gpt-4o-mini", "polyroute chat", "polyroute chat"]


def test_the_cli_says_why_a_hook_refused_or_failed(
    fleet: Fleet, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from polyroute.cli import cli

    monkeypatch.setenv("POLYROUTE_SIM_KEY", fleet.key)
    path = tmp_path / "polyroute.toml"
    hooks = '[hooks]\nenabled = ["redact", "example-blocklist", "example-crash"]\n'
    path.write_text(fleet.toml() + "\n" + hooks)
    runner = CliRunner()
    r = runner.invoke(cli, ["ask", "something forbidden", "--config", str(path)])
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        "polyroute: error: refused by hook example-blocklist: the request mentions "
        "'forbidden', which is not allowed here"
    )
    r = runner.invoke(cli, ["ask", "hi", "--config", str(path)])
    assert r.exit_code == 1
    assert "hook example-crash failed: pre_request raised RuntimeError" in r.stderr
    assert fleet["openai"].calls == 0
