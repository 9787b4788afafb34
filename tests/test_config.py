"""Config discovery, validation errors (one line naming file and key), zero-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyroute.config import find_config, load, polyroute_home
from polyroute.errors import ConfigError


def write(tmp: Path, text: str, name: str = "polyroute.toml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


GOOD = """
[router]
strategy = "cost"
[providers.oa]
type = "openai"
api_key = "env:MY_KEY"
models = ["gpt-4o-mini", "gpt-4o"]
default_model = "gpt-4o-mini"
[providers.oa.budget]
daily_usd = 5
[models."my-model"]
provider_type = "openai"
input_usd_per_mtok = 1
output_usd_per_mtok = 2
"""


def test_discovery_order(tmp_path: Path) -> None:
    explicit = write(tmp_path, "", "explicit.toml")
    from_env = write(tmp_path, "", "env.toml")
    local = write(tmp_path, "")
    xdg = tmp_path / "xdg" / "polyroute" / "config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("")
    env = {"POLYROUTE_CONFIG": str(from_env), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert find_config(explicit, env) == explicit
    assert find_config(None, env) == from_env
    assert find_config(None, {"XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"]}) == Path("polyroute.toml")
    local.unlink()
    assert find_config(None, {"XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"]}) == xdg


def test_good_config_resolves_env_keys(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD), env={"MY_KEY": "sk-secret-123456789"})
    p = cfg.provider("oa")
    assert p.api_key is not None and p.api_key.reveal() == "sk-secret-123456789"
    assert "sk-secret" not in repr(p) and "sk-secret" not in repr(cfg.settings)
    assert cfg.key_status("oa") == "set"
    assert cfg.catalog().get("openai", "my-model").price is not None


def test_missing_env_key_is_clear(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD), env={})
    with pytest.raises(ConfigError, match=r"providers\.oa\.api_key: \$MY_KEY is not set"):
        cfg.provider("oa")
    assert cfg.key_status("oa").startswith("missing")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[providers.x]\ntype = 'opnai'\n", "providers.x.type: unknown provider type 'opnai'"),
        ("[routr]\n", "routr: unknown key"),
        (
            "[router]\nmax_attempts = 0\n",
            "router.max_attempts: Input should be greater than or equal to 1",
        ),
        ("[router]\nstrategy = 'cheap'\n", "router.strategy: must be one of"),
        (
            "[providers.x]\ntype = 'openai'\napi_key = 'sk-abc'\n",
            "providers.x.api_key: must be 'env:NAME'",
        ),
        (
            "[providers.x]\ntype = 'openai'\nmodels = ['a']\ndefault_model = 'b'\n",
            "providers.x.default_model: 'b' is not in models",
        ),
        ("[providers.x]\ntype = 'openai'\ncolour = 1\n", "providers.x.colour: unknown key"),
        ("[fusion]\nmethod = 'vote'\n", "fusion.method:"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)) and expected in msg
    assert "sk-abc" not in msg


def test_redis_url_takes_a_redis_url_and_refuses_anything_else(tmp_path: Path) -> None:
    for url in ("redis://localhost:6379/0", "rediss://h:6380", "unix:///run/redis.sock", ""):
        path = write(tmp_path, f'[storage]\nredis_url = "{url}"\n')
        assert load(path, env={}).settings.storage.redis_url == url
    for url in ("localhost:6379", "http://localhost:6379"):
        path = write(tmp_path, f'[storage]\nredis_url = "{url}"\n')
        with pytest.raises(ConfigError) as info:
            load(path, env={})
        msg = str(info.value)
        assert msg.startswith(f"{path}: storage.redis_url: must be a redis://") and "\n" not in msg


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "nope.toml", env={})


def test_zero_config_discovers_env_keys(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-x",
        "GEMINI_API_KEY": "g",
        "MISTRAL_API_KEY": "m",
        "OLLAMA_HOST": "127.0.0.1:9",
    }
    cfg = load(None, env=env)
    assert cfg.source == "environment"
    assert set(cfg.settings.providers) == {"openai", "google", "mistral"}
    assert cfg.settings.providers["google"].api_key == "env:GEMINI_API_KEY"


def test_zero_config_finds_a_reachable_ollama(tmp_path: Path) -> None:
    from polyroute.testing import OllamaSimulator

    with OllamaSimulator() as sim:
        cfg = load(None, env={"OLLAMA_HOST": sim.root_url})
    assert cfg.settings.providers["ollama"].base_url == sim.root_url


def test_home_env_var_moves_data(tmp_path: Path) -> None:
    assert polyroute_home({"POLYROUTE_HOME": str(tmp_path)}) == tmp_path
    assert polyroute_home({}).name == "polyroute"


def test_provider_headers_reach_the_wire(tmp_path: Path) -> None:
    import asyncio

    from polyroute.client import Polyroute
    from polyroute.testing import AnthropicSimulator

    with AnthropicSimulator() as sim:
        text = (
            f'[providers.c]\ntype = "anthropic"\nbase_url = "{sim.root_url}"\napi_key = "env:K"\n'
            '[providers.c.headers]\n"x-team" = "search"\n'
        )
        # an explicit env is all the config sees: its home too, or the ledger goes to the user's
        env = {"K": "sim-key", "POLYROUTE_HOME": str(tmp_path / "home")}
        cfg = load(write(tmp_path, text), env=env)

        async def ask() -> None:
            async with Polyroute(cfg) as pr:
                await pr.complete("hi", provider="c", model="claude-haiku-4-5")

        asyncio.run(ask())
        assert sim.last_request().headers["x-team"] == "search"
