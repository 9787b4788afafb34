"""Catalog and prices: genai-prices where known, packaged fallback, user overrides, unpriced."""

from __future__ import annotations

import pytest

from polyroute.catalog import Catalog, ModelOverride, Price
from polyroute.types import Usage


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_every_packaged_model_is_priced_and_described(catalog: Catalog) -> None:
    for m in catalog.all():
        assert m.price is not None, m.id
        assert m.capabilities and m.quality is not None and 0 <= m.quality <= 1


def test_genai_prices_are_used_and_cached_input_priced_apart(catalog: Catalog) -> None:
    m = catalog.get("openai", "gpt-4o-mini")
    assert m.price is not None and m.price.source == "genai-prices"
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=500_000)
    cost = catalog.cost("openai", "gpt-4o-mini", usage)
    # 0.5M input at 0.15, 0.5M cached at 0.075, 1M output at 0.60
    assert cost.usd == pytest.approx(0.075 + 0.0375 + 0.60)


def test_tiered_prices_follow_genai_prices(catalog: Catalog) -> None:
    small = catalog.cost("google", "gemini-2.5-pro", Usage(100_000, 0)).usd
    large = catalog.cost("google", "gemini-2.5-pro", Usage(300_000, 0)).usd
    assert (
        small is not None and large is not None and large / 3 > small
    )  # the >200k tier costs more


def test_user_override_wins(catalog: Catalog) -> None:
    c = Catalog.load(
        [ModelOverride("gpt-4o-mini", "openai", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)]
    )
    assert c.cost("openai", "gpt-4o-mini", Usage(1_000_000, 1_000_000)).usd == pytest.approx(3.0)
    # cached input not overridden: priced at the configured input rate, never under-counted
    assert c.get("openai", "gpt-4o-mini").price == Price(1.0, 2.0, None, "config")


def test_new_model_needs_provider_type() -> None:
    with pytest.raises(ValueError, match="provider_type is required"):
        Catalog.load([ModelOverride("brand-new")])
    c = Catalog.load([ModelOverride("brand-new", "openai-compatible", 0.1, 0.2, quality=0.5)])
    assert c.get("openai-compatible", "brand-new").price == Price(0.1, 0.2, None, "config")


def test_unknown_model_is_unpriced_not_free(catalog: Catalog) -> None:
    m = catalog.get("openai-compatible", "some-local-finetune")
    assert m.price is None and not m.known
    assert catalog.cost("openai-compatible", "some-local-finetune", Usage(10, 10)).usd is None


def test_ollama_is_free_by_declaration(catalog: Catalog) -> None:
    assert catalog.cost("ollama", "anything:latest", Usage(1000, 1000)).usd == 0.0


def test_dated_snapshot_names_resolve(catalog: Catalog) -> None:
    assert catalog.cost("openai", "gpt-4o-2024-08-06", Usage(1_000_000, 0)).usd == pytest.approx(
        2.5
    )


def test_unknown_names_are_not_kept_past_a_bound(catalog: Catalog) -> None:
    from polyroute.catalog import _catalog

    for i in range(_catalog._MAX_UNKNOWN + 50):
        assert catalog.get("openai", f"made-up-{i}").id == f"made-up-{i}"
    unknown = [k for k in catalog._resolved if k[1].startswith("made-up-")]
    assert len(unknown) <= _catalog._MAX_UNKNOWN
    assert catalog.get("openai", "made-up-9999").id == "made-up-9999"  # still answered


def test_an_ollama_latest_tag_is_its_bare_model(catalog: Catalog) -> None:
    bare, tagged = catalog.get("ollama", "llama3.2"), catalog.get("ollama", "llama3.2:latest")
    assert tagged.id == "llama3.2:latest" and tagged.known
    assert (tagged.params_b, tagged.quality, tagged.capabilities) == (
        bare.params_b,
        bare.quality,
        bare.capabilities,
    )
    assert not catalog.get("ollama", "nonesuch:latest").known
