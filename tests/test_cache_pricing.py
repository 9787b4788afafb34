"""Cache reads and writes cost their own prices, each input token billed once: each vendor's
reported usage against a bill worked out by hand from the vendor's published rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from polyroute.catalog import Catalog, ModelOverride, Price
from polyroute.cli import cli
from polyroute.config import Config, validate
from polyroute.ledger._meter import worst_case_usd
from polyroute.providers import anthropic, google, openai
from polyroute.tokens import prompt_token_bound
from polyroute.types import CacheControl, ChatRequest, Message, TextPart, Usage


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_openai_cached_input_at_half_price_reasoning_as_output(catalog: Catalog) -> None:
    # https://openai.com/api/pricing/ (gpt-4o): input $2.50, cached input $1.25,
    # output $10.00 per 1M tokens; reasoning tokens are billed as output.
    usage = openai.usage_from_wire(
        {
            "prompt_tokens": 10_000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 8_192},
            "completion_tokens_details": {"reasoning_tokens": 200},
        }
    )
    bill = (1_808 * 2.50 + 8_192 * 1.25 + 500 * 10.00) / 1e6
    assert catalog.cost("openai", "gpt-4o", usage).usd == pytest.approx(bill)


def test_anthropic_reads_and_both_write_lifetimes_at_their_rates(catalog: Catalog) -> None:
    # https://platform.claude.com/docs/en/about-claude/pricing (Claude Haiku 4.5): base input
    # $1, 5-minute cache writes $1.25, 1-hour cache writes $2, cache hits $0.10, output $5
    # per MTok. input_tokens (50) excludes the cache reads and writes.
    usage = anthropic.usage_from_wire(
        {
            "input_tokens": 50,
            "cache_read_input_tokens": 20_000,
            "cache_creation_input_tokens": 3_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 2_000,
                "ephemeral_1h_input_tokens": 1_000,
            },
            "output_tokens": 400,
        }
    )
    assert usage.prompt_tokens == 23_050
    bill = (50 * 1.00 + 20_000 * 0.10 + 2_000 * 1.25 + 1_000 * 2.00 + 400 * 5.00) / 1e6
    assert bill == pytest.approx(0.00855)
    assert catalog.cost("anthropic", "claude-haiku-4-5", usage).usd == pytest.approx(bill)


def test_gemini_cached_content_and_thoughts(catalog: Catalog) -> None:
    # https://ai.google.dev/gemini-api/docs/pricing (Gemini 2.5 Flash): input $0.30,
    # context caching $0.03, output (thinking included) $2.50 per 1M tokens.
    usage = google.usage_from_wire(
        {
            "promptTokenCount": 10_000,
            "cachedContentTokenCount": 8_000,
            "candidatesTokenCount": 300,
            "thoughtsTokenCount": 700,
        }
    )
    bill = (2_000 * 0.30 + 8_000 * 0.03 + 1_000 * 2.50) / 1e6
    assert catalog.cost("google", "gemini-2.5-flash", usage).usd == pytest.approx(bill)


def test_config_cache_write_prices_bill_each_input_token_once() -> None:
    settings = validate(
        {
            "models": {
                "house-model": {
                    "provider_type": "anthropic",
                    "input_usd_per_mtok": 3.0,
                    "output_usd_per_mtok": 15.0,
                    "cached_input_usd_per_mtok": 0.30,
                    "cache_write_usd_per_mtok": 3.75,
                    "cache_write_1h_usd_per_mtok": 6.0,
                }
            }
        },
        "test",
    )
    catalog = Config(settings, "test", {}).catalog()
    usage = Usage(1_000_000, 100_000, 500_000, 300_000, 100_000, 40_000)
    # 200k fresh, 500k read, 200k 5-minute writes, 100k 1-hour writes, 100k output
    bill = 0.2 * 3.0 + 0.5 * 0.30 + 0.2 * 3.75 + 0.1 * 6.0 + 0.1 * 15.0
    assert catalog.cost("anthropic", "house-model", usage).usd == pytest.approx(bill)
    # without write prices, writes cost as input (and a 1-hour one as a 5-minute one)
    bare = Catalog.load(
        [ModelOverride("plain", "anthropic", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)]
    )
    assert bare.cost("anthropic", "plain", usage).usd == pytest.approx(1.0 * 1.0 + 0.1 * 2.0)


def test_the_worst_case_holds_a_request_that_writes_its_whole_prompt_for_an_hour(
    catalog: Catalog,
) -> None:
    entry = catalog.get("anthropic", "claude-haiku-4-5")
    text = "word " * 4_000
    plain = ChatRequest("claude-haiku-4-5", (Message.user(text),), max_tokens=10)
    marked = ChatRequest(
        "claude-haiku-4-5",
        (Message.user((TextPart(text, CacheControl("1h")),)),),
        max_tokens=10,
    )
    prompt = prompt_token_bound(marked)
    assert prompt == prompt_token_bound(plain) and prompt > 4_000
    # input at $1 unmarked; every input token written for an hour at $2 when marked
    assert worst_case_usd(entry, plain) == pytest.approx((prompt * 1.0 + 10 * 5.0) / 1e6)
    assert worst_case_usd(entry, marked) == pytest.approx((prompt * 2.0 + 10 * 5.0) / 1e6)


def test_the_config_keys_show_in_models_json(tmp_path: Path) -> None:
    config = tmp_path / "polyroute.toml"
    config.write_text(
        '[models."house-model"]\n'
        'provider_type = "anthropic"\n'
        "input_usd_per_mtok = 3.0\n"
        "output_usd_per_mtok = 15.0\n"
        "cache_write_usd_per_mtok = 3.75\n"
        "cache_write_1h_usd_per_mtok = 6.0\n"
    )
    r = CliRunner().invoke(cli, ["models", "--json", "--config", str(config)])
    assert r.exit_code == 0, r.output
    [house] = [m for m in json.loads(r.stdout) if m["model"] == "house-model"]
    assert (house["cache_write_usd_per_mtok"], house["cache_write_1h_usd_per_mtok"]) == (3.75, 6.0)
    assert house["price_source"] == "config"


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**6))
def test_a_call_that_touches_no_cache_pays_input_and_output_at_their_rates(
    prompt: int, completion: int, hour: int
) -> None:
    price = Price(3.0, 15.0, 0.30, cache_write=3.75, cache_write_1h=6.0)
    expected = (prompt * 3.0 + completion * 15.0) / 1_000_000
    assert price.cost(Usage(prompt, completion, reasoning_tokens=completion // 2)) == expected
    # 1-hour writes are a part of the writes: with none written, none of them counts either
    assert price.cost(Usage(prompt, completion, cache_write_1h_tokens=hour)) == expected
