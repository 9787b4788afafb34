"""Acceptance: the plaintext key (and the master passphrase) appear in no log, no file, no output.

A distinctive key is stored in the vault and a simulated provider is pointed
at it with ``api_key = "vault:leak"``. Then every place a secret could escape
is searched: a real ``polyroute --debug`` process's stdout and stderr on
success, 401 and 500; every log record at DEBUG from every logger while the
library succeeds and fails; every byte under $POLYROUTE_HOME and the vault;
str/repr/args/body of each raised exception; the reprs of the config, the
provider and the secret; ``polyroute providers`` output.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from polyroute.cli import cli
from polyroute.client import Polyroute
from polyroute.config import load
from polyroute.credentials import KdfParams, Vault
from polyroute.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    CredentialError,
    InternalServerError,
    PolyrouteError,
    ProviderError,
)
from polyroute.testing import Fleet

TAIL = secrets.token_hex(16)
LEAK = "sk-LEAKCHECK-" + TAIL
PASSPHRASE = "master-LEAKCHECK-" + secrets.token_hex(8)
# the whole key, its random part alone, and the master passphrase
NEEDLES = (LEAK, TAIL, PASSPHRASE)
SIM_ENV_LINE = 'api_key = "env:POLYROUTE_SIM_KEY"'
VENDORS = ("openai", "anthropic")


def assert_clean(data: str | bytes, where: str) -> None:
    for needle in NEEDLES:
        found = needle.encode() in data if isinstance(data, bytes) else needle in data
        assert not found, f"a secret leaked into {where}"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(VENDORS, reply="nothing to see", key=LEAK) as f:
        yield f


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"  # $POLYROUTE_HOME (conftest)


@pytest.fixture
def config_path(
    fleet: Fleet, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", PASSPHRASE)
    Vault(home / "credentials", PASSPHRASE, kdf=KdfParams(n=2**10)).set("leak", LEAK)
    text = fleet.toml()
    assert text.count(SIM_ENV_LINE) == len(VENDORS)
    path = tmp_path / "polyroute.toml"
    path.write_text(text.replace(SIM_ENV_LINE, 'api_key = "vault:leak"'))
    yield path
    for sim in fleet.sims.values():
        sim.script.recover()


def assert_tree_clean(root: Path) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing under {root}"
    for f in files:
        assert_clean(f.read_bytes(), str(f))


def assert_exception_clean(exc: BaseException) -> None:
    """str, repr, args, ``body`` and the formatted traceback of ``exc`` and its chain."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        assert_clean(str(seen), f"str({name})")
        assert_clean(repr(seen), f"repr({name})")
        assert_clean(repr(seen.args), f"{name}.args")
        if isinstance(seen, ProviderError):
            assert_clean(repr(seen.body), f"{name}.body")
            assert_clean(json.dumps(seen.body, default=str), f"{name}.body as JSON")
        seen = seen.__cause__ or seen.__context__
    assert_clean("".join(traceback.format_exception(exc)), f"traceback of {type(exc).__name__}")


# -- (a) a real process with --debug -------------------------------------------


def run_cli(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYROUTE_")}
    env.update(
        POLYROUTE_HOME=str(tmp_path / "home"),
        POLYROUTE_MASTER_KEY=PASSPHRASE,
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        OLLAMA_HOST="http://127.0.0.1:9",
    )
    return subprocess.run(
        [sys.executable, "-m", "polyroute", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("vendor", VENDORS)
def test_debug_process_output_has_no_key(
    vendor: str, fleet: Fleet, config_path: Path, tmp_path: Path
) -> None:
    script = fleet[vendor].script
    ask = ("--debug", "ask", "hi", "--provider", vendor, "--config", str(config_path))

    script.fail_next(1, 401)
    denied = run_cli(tmp_path, *ask)
    assert denied.returncode == 4 and "HTTP 401" in denied.stderr
    assert "Traceback" in denied.stderr  # --debug really printed one

    script.fail_always(500)
    broken = run_cli(tmp_path, *ask)
    assert broken.returncode == 4 and "HTTP 500" in broken.stderr
    script.recover()

    ok = run_cli(tmp_path, *ask, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["content"] == "nothing to see"
    streamed = run_cli(tmp_path, *ask, "--stream")
    assert streamed.returncode == 0, streamed.stderr

    # the key really went over the wire, so its absence above means something
    sent = fleet[vendor].last_request().headers
    assert sent.get("authorization") == f"Bearer {LEAK}" or sent.get("x-api-key") == LEAK

    for name, p in [("401", denied), ("500", broken), ("ok", ok), ("stream", streamed)]:
        assert_clean(p.stdout, f"stdout ({name})")
        assert_clean(p.stderr, f"stderr ({name})")


def test_debug_process_vault_failures_have_no_key(
    config_path: Path, home: Path, tmp_path: Path
) -> None:
    ask = ("--debug", "ask", "hi", "--provider", "openai", "--config", str(config_path))
    cred = Vault(home / "credentials", PASSPHRASE).path("leak")
    blob = cred.read_bytes()
    cred.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    tampered = run_cli(tmp_path, *ask)
    assert tampered.returncode == 2 and "tampered" in tampered.stderr
    cred.write_bytes(blob)
    other = config_path.with_name("other.toml")
    other.write_text(config_path.read_text().replace("vault:leak", "vault:absent"))
    missing = run_cli(tmp_path, "--debug", "ask", "hi", "--config", str(other))
    # unpinned: routing excludes every keyless provider, so none is eligible (exit 4)
    assert missing.returncode == 4 and "no credential 'absent' in the vault" in missing.stderr
    pinned = run_cli(
        tmp_path, "--debug", "ask", "hi", "--provider", "openai", "--config", str(other)
    )
    assert pinned.returncode == 2 and "vault credential 'absent' not found" in pinned.stderr
    for name, p in [("tampered", tampered), ("missing", missing), ("pinned", pinned)]:
        assert_clean(p.stdout + p.stderr, f"output ({name})")


def test_credentials_commands_never_print_the_key(tmp_path: Path, home: Path) -> None:
    stored = run_cli(tmp_path, "--debug", "credentials", "set", "piped", stdin=LEAK + "\n")
    assert stored.returncode == 0, stored.stderr
    listed = run_cli(tmp_path, "credentials", "list")
    listed_json = run_cli(tmp_path, "credentials", "list", "--json")
    assert "piped" in listed.stdout and "piped" in listed_json.stdout
    for name, p in [("set", stored), ("list", listed), ("list --json", listed_json)]:
        assert_clean(p.stdout + p.stderr, f"credentials {name}")
    assert Vault(home / "credentials", PASSPHRASE).get("piped").reveal() == LEAK
    assert_tree_clean(home)


# -- (b) every log record, (d) every exception: the library in-process -------------


async def test_library_logs_and_exceptions_have_no_key(
    fleet: Fleet, config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's debug output
    errors: list[PolyrouteError] = []
    async with Polyroute(load(config_path)) as pr:
        for vendor in VENDORS:
            script = fleet[vendor].script
            answer = await pr.complete("hi", provider=vendor)
            assert answer.content == "nothing to see"
            stream = pr.stream("hi", provider=vendor)
            async for _ in stream:
                pass
            assert stream.answer is not None

            script.fail_next(1, 401)
            with pytest.raises(AllProvidersFailedError) as denied:
                await pr.complete("hi", provider=vendor)
            assert isinstance(denied.value.last, AuthenticationError)
            errors += [denied.value, *denied.value.errors]

            script.fail_always(500)
            with pytest.raises(AllProvidersFailedError) as broken:
                await pr.complete("hi", provider=vendor)
            assert isinstance(broken.value.last, InternalServerError)
            errors += [broken.value, *broken.value.errors]
            with pytest.raises(AllProvidersFailedError) as broken_stream:
                async for _ in pr.stream("hi", provider=vendor):
                    pass
            errors += [broken_stream.value, *broken_stream.value.errors]
            script.recover()
        checks = await pr.health(timeout_s=5)
        assert all(c.ok for c in checks), checks

    http_debug = [r for r in caplog.records if r.name.startswith(("httpcore", "polyroute.http"))]
    assert http_debug, "no HTTP-level debug logging captured: the check would prove nothing"
    assert_clean(caplog.text, "log text")
    for record in caplog.records:
        assert_clean(record.getMessage(), f"log record from {record.name}")
        assert_clean(repr(record.__dict__), f"log record attributes from {record.name}")
    assert len(errors) >= 6 * len(VENDORS)
    for exc in errors:
        assert_exception_clean(exc)


def vault_errors(
    config_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> list[CredentialError]:
    """The vault's failures as the library raises them: tampered, wrong passphrase, locked, missing."""
    out: list[CredentialError] = []

    def provider_error() -> CredentialError:
        with pytest.raises(CredentialError) as info:
            load(config_path).provider("openai")
        return info.value

    cred = Vault(home / "credentials", PASSPHRASE).path("leak")
    blob = cred.read_bytes()
    cred.write_bytes(blob[:20] + bytes([blob[20] ^ 1]) + blob[21:])
    out.append(provider_error())
    cred.write_bytes(blob)
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", "wrong " + PASSPHRASE[::-1])
    out.append(provider_error())
    monkeypatch.delenv("POLYROUTE_MASTER_KEY")
    out.append(provider_error())
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", PASSPHRASE)
    Vault(home / "credentials", PASSPHRASE).delete("leak")
    out.append(provider_error())
    return out


def test_vault_errors_have_no_key(
    config_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = vault_errors(config_path, home, monkeypatch)
    messages = [str(e) for e in errors]
    assert any("tampered" in m for m in messages) and any("wrong master" in m for m in messages)
    for exc in errors:
        assert_exception_clean(exc)


# -- (c) files ---------------------------------------------------------------------


async def test_files_have_no_key(config_path: Path, home: Path, tmp_path: Path) -> None:
    async with Polyroute(load(config_path)) as pr:  # use it first: nothing may be written in clear
        await pr.complete("hi", provider="openai")
    vault_dir = home / "credentials"
    assert (vault_dir / "vault.json").is_file()
    assert Vault(vault_dir, PASSPHRASE).path("leak").is_file()
    assert_tree_clean(vault_dir)
    assert_tree_clean(home)
    assert_tree_clean(tmp_path)  # the config and anything else a run left behind


# -- (d) reprs of what holds the key -------------------------------------------------


def test_reprs_and_dumps_have_no_key(config_path: Path) -> None:
    config = load(config_path)
    provider = config.provider("openai")
    assert provider.api_key is not None and provider.api_key.reveal() == LEAK
    assert_clean(repr(config), "repr(Config)")
    assert_clean(str(config), "str(Config)")
    assert_clean(repr(provider), "repr(Provider)")
    assert_clean(repr(provider.api_key), "repr(Secret)")
    assert_clean(str(provider.api_key), "str(Secret)")
    assert_clean(f"{provider.api_key}", "f-string of Secret")
    assert_clean(config.settings.model_dump_json(), "Settings.model_dump_json()")
    assert_clean(repr(config.settings), "repr(Settings)")
    assert_clean(repr(config.vault()), "repr(Vault)")
    assert_clean(repr(Polyroute(config).client("openai")), "repr(ProviderClient)")


def test_env_key_config_repr_has_no_key(tmp_path: Path) -> None:
    """Config keeps its environment: its repr must not print the keys in it."""
    cfg = tmp_path / "env.toml"
    cfg.write_text('[providers.x]\ntype = "openai"\napi_key = "env:X_KEY"\n')
    config = load(cfg, env={"X_KEY": LEAK, "POLYROUTE_MASTER_KEY": PASSPHRASE})
    assert config.provider("x").api_key == config.provider("x").api_key
    assert_clean(repr(config), "repr(Config) with env keys")


# -- (e) providers output ------------------------------------------------------------


@pytest.mark.parametrize("args", [("providers",), ("providers", "--json")])
def test_providers_output_has_no_key(config_path: Path, args: tuple[str, ...]) -> None:
    r = CliRunner().invoke(cli, [*args, "--config", str(config_path)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert "set (vault)" in r.stdout
    assert_clean(r.stdout + r.stderr, " ".join(args))


@pytest.mark.parametrize("status", [401, 400])
async def test_a_vendor_echoing_the_key_back_does_not_leak_it(
    fleet: Fleet, config_path: Path, status: int
) -> None:
    # Real vendors mask keys in their errors; should one not, the exact key is scrubbed
    # from the error's message and body even when it has no key-like prefix.
    fleet["openai"].script.fail_next(1, status, message=f"bad key {LEAK} (tail {TAIL})")
    async with Polyroute(load(config_path)) as pr:
        with pytest.raises(ProviderError) as info:
            await pr.complete("hi", provider="openai")
    exc = info.value
    assert "bad key *** (tail" in str(exc)
    for text in (str(exc), repr(exc.args), json.dumps(exc.body)):
        assert LEAK not in text
