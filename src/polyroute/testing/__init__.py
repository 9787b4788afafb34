"""Simulated vendor upstreams on loopback, for tests, the demo and benchmarks.

Each simulator speaks one vendor's real wire format (the official SDKs parse
what it sends: see ``tests/contract``) and plays a :class:`Script` of faults::

    from polyroute.testing import OpenAISimulator

    with OpenAISimulator(reply="42") as sim:
        sim.script.fail_next(2, 503)      # two failures, then answers
        ...                                # point a provider at sim.base_url
        assert sim.calls == 3
"""

from __future__ import annotations

from polyroute.testing._bench import Profile, case_replier, script_fleet
from polyroute.testing._fleet import SIMULATORS, Fleet, simulator_class
from polyroute.testing._sim import (
    Embedder,
    Fault,
    RecordedRequest,
    Script,
    SimChat,
    SimReply,
    Simulator,
    count_tokens,
    embed_text,
    sample_json,
    sse,
)
from polyroute.testing.anthropic import AnthropicSimulator
from polyroute.testing.google import GoogleSimulator
from polyroute.testing.mistral import MistralSimulator
from polyroute.testing.ollama import OllamaSimulator
from polyroute.testing.openai import OpenAISimulator

__all__ = [
    "SIMULATORS",
    "AnthropicSimulator",
    "Embedder",
    "Fault",
    "Fleet",
    "GoogleSimulator",
    "MistralSimulator",
    "OllamaSimulator",
    "OpenAISimulator",
    "Profile",
    "RecordedRequest",
    "Script",
    "SimChat",
    "SimReply",
    "Simulator",
    "case_replier",
    "count_tokens",
    "embed_text",
    "sample_json",
    "script_fleet",
    "simulator_class",
    "sse",
]
