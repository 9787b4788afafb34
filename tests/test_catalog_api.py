"""The catalog's ``api`` key: which OpenAI models the adapter calls through the Responses API."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyroute.catalog import Catalog, ModelOverride
from polyroute.config import load
from polyroute.errors import ConfigError

RESPONSES_ONLY = {"o1-pro", "o3-pro", "gpt-5-pro", "gpt-5-codex", "codex-mini-latest"}


def test_responses_only_models_are_marked_and_priced() -> None:
    catalog = Catalog.load()
    assert catalog.responses_models("openai") == RESPONSES_ONLY
    for model in RESPONSES_ONLY:
        entry = catalog.get("openai", model)
        assert entry.api == "responses" and entry.price is not None, model
    assert catalog.get("openai", "gpt-4o").api == "chat"
    assert catalog.get("openai", "made-up-model").api == "chat"


def test_an_override_sets_or_clears_api() -> None:
    catalog = Catalog.load(
        [ModelOverride("gpt-4o", api="responses"), ModelOverride("o3-pro", api="chat")]
    )
    assert "gpt-4o" in catalog.responses_models("openai")
    assert "o3-pro" not in catalog.responses_models("openai")


def test_config_api_reaches_the_provider(tmp_path: Path) -> None:
    path = tmp_path / "polyroute.toml"
    path.write_text(
        '[providers.oa]\ntype = "openai"\napi_key = "env:K"\n'
        '[models."my-model"]\nprovider_type = "openai"\napi = "responses"\n'
    )
    config = load(str(path), env={"K": "k"})
    provider = config.provider("oa")
    assert "my-model" in provider.responses_models and "o3-pro" in provider.responses_models


def test_a_bad_api_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "polyroute.toml"
    path.write_text('[models."gpt-4o"]\napi = "completions"\n')
    with pytest.raises(ConfigError, match="api"):
        load(str(path), env={})
