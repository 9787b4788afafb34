"""What the event hub costs on the request path (issue 17: nothing measurable with no
subscriber).

Run: ./dev python bench/events.py
Measured (perf_counter_ns, median of 5 rounds of 200,000 calls each, after a warm-up):
1. an emitter's guarded emit, ``if hub.wants(kind): hub.emit(Event(...))``, with no
   subscriber, with a subscriber to another kind, and with a subscriber to that kind
   (the event built and delivered to a no-op callback);
2. the facade's routing step (``Polyroute._decide_for``: the decision, the recent-decisions
   ring and the ``routing_decision`` guard) on bench/routing.py's synthetic fleet of
   20 providers x 10 models, with no subscriber and with one to ``routing_decision``.
Run (2) on the tree before events existed to compare: it does not need them.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from routing import synthetic_config

from polyroute.client import Polyroute, Routing
from polyroute.hub import EventHub
from polyroute.types import ChatRequest, Message

ROUNDS = 5
CALLS = 200_000


def per_call_ns(fn: Callable[[], object], calls: int = CALLS) -> float:
    """The median over ROUNDS of the mean ns per call of ``fn``."""
    for _ in range(calls // 10):
        fn()
    means = []
    for _ in range(ROUNDS):
        gc.collect()
        t = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter_ns() - t) / calls)
    return statistics.median(means)


def emits() -> None:
    from polyroute.hub import Fallback

    def guarded(hub: EventHub) -> Callable[[], None]:
        def emit() -> None:
            if hub.wants("fallback"):
                hub.emit(Fallback("a", "m", "b", "m", "rate_limit", "slow down", 429))

        return emit

    idle = EventHub()
    other = EventHub()
    other.subscribe(lambda e: None, "budget_changed")
    listened = EventHub()
    listened.subscribe(lambda e: None, "fallback")
    print("1. a guarded emit (ns per call)")
    print(f"   no subscriber                   {per_call_ns(guarded(idle)):8.1f}")
    print(f"   a subscriber to another kind    {per_call_ns(guarded(other)):8.1f}")
    print(f"   a subscriber to this kind       {per_call_ns(guarded(listened)):8.1f}")
    print(f"   (an empty function call         {per_call_ns(lambda: None):8.1f})")


def decisions() -> None:
    pr = Polyroute(synthetic_config(random.Random(7)))
    request = ChatRequest("ignored", (Message.user("What is the capital of Australia?"),))
    routing = Routing()

    def decide() -> None:
        pr._decide_for(request, routing, stream=False, virtual_key=None)

    n = 20_000
    before = per_call_ns(decide, n) / 1000
    label = "   no subscriber                   "
    print("2. Polyroute._decide_for (µs per call)")
    print(f"{label}{before:8.2f}")
    if hasattr(pr.events, "wants"):
        pr.events.subscribe(lambda e: None, "routing_decision")
        print(f"   a routing_decision subscriber   {per_call_ns(decide, n) / 1000:8.2f}")


if __name__ == "__main__":
    if hasattr(EventHub, "wants"):
        emits()
    decisions()
