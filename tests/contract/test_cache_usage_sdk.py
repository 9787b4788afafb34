"""The official SDKs parse the cache and reasoning counts the simulators report, in each
vendor's own shape (Anthropic's cache_creation split and thinking tokens, OpenAI's details,
Gemini's cachedContentTokenCount and thoughtsTokenCount)."""

from __future__ import annotations

import anthropic
import openai
from google import genai
from google.genai import types as gtypes

from polyroute.testing import AnthropicSimulator, GoogleSimulator, OpenAISimulator

LONG = "a long and steady prompt " * 200  # ~1,250 tokens


def test_anthropic_sdk_reads_the_cache_split() -> None:
    with AnthropicSimulator() as sim:
        sim.script.cached_tokens, sim.script.cache_write_tokens = 600, 300
        sim.script.cache_write_1h_tokens, sim.script.reasoning_tokens = 100, 7
        with anthropic.Anthropic(base_url=sim.base_url, api_key=sim.api_key) as c:
            m = c.messages.create(
                model="claude-haiku-4-5",
                max_tokens=100,
                system=[{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}],
                messages=[{"role": "user", "content": "hi"}],
            )
            with c.messages.stream(
                model="claude-haiku-4-5",
                max_tokens=100,
                messages=[{"role": "user", "content": LONG}],
            ) as s:
                streamed = s.get_final_message().usage
    u = m.usage
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (600, 300)
    assert u.cache_creation is not None
    assert (
        u.cache_creation.ephemeral_5m_input_tokens,
        u.cache_creation.ephemeral_1h_input_tokens,
    ) == (
        200,
        100,
    )
    assert u.output_tokens_details is not None and u.output_tokens_details.thinking_tokens == 7
    assert (streamed.cache_read_input_tokens, streamed.cache_creation_input_tokens) == (600, 300)


def test_openai_sdk_reads_cached_and_reasoning_details() -> None:
    with OpenAISimulator() as sim:
        sim.script.cached_tokens, sim.script.reasoning_tokens = 512, 40
        with openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key) as c:
            r = c.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": LONG}]
            )
    u = r.usage
    assert u is not None and u.prompt_tokens_details is not None
    assert u.completion_tokens_details is not None
    assert u.prompt_tokens_details.cached_tokens == 512
    assert u.completion_tokens_details.reasoning_tokens == 40


def test_google_genai_reads_cached_content_and_thoughts() -> None:
    with GoogleSimulator() as sim:
        sim.script.cached_tokens, sim.script.reasoning_tokens = 256, 30
        client = genai.Client(
            api_key=sim.api_key, http_options=gtypes.HttpOptions(base_url=sim.base_url)
        )
        r = client.models.generate_content(model="gemini-2.5-flash", contents=LONG)
    u = r.usage_metadata
    assert u is not None
    assert (u.cached_content_token_count, u.thoughts_token_count) == (256, 30)
    assert u.total_token_count == (u.prompt_token_count or 0) + (u.candidates_token_count or 0) + 30
