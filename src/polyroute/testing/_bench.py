"""Simulated vendors that differ as real ones do, for ``polyroute bench`` (tests, the demo).

A :class:`Profile` scripts one simulator: its latency (before the answer and
between stream chunks), the share of calls that fail, and the share of
benchmark cases it answers correctly (with the case's ``reference``; else a
wrong answer). Draws are seeded, so a run is the same every time.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyroute.testing._sim import Replier, SimChat

if TYPE_CHECKING:
    from polyroute.benchmark import Case
    from polyroute.testing._fleet import Fleet

WRONG_ANSWER = "I am not sure; it could be several things."


@dataclass(frozen=True, slots=True)
class Profile:
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    error_rate: float = 0.0
    """Share of calls answered with ``error_status`` (500: retryable, so retries show)."""
    error_status: int = 500
    quality: float = 1.0
    """Chance that a case is answered with its reference answer."""
    seed: int = 0


def case_replier(cases: Iterable[Case], quality: float, *, seed: int = 0) -> Replier:
    """A reply function: a known case's reference with probability ``quality``, else
    :data:`WRONG_ANSWER`; a prompt of no case (a judge's, say) gets ``SCORE: 10 * quality``."""
    answers = {c.messages[-1].text: c.reference for c in cases if c.reference}
    rng = random.Random(seed)
    lock = threading.Lock()  # the simulator answers on its own thread

    def reply(chat: SimChat) -> str:
        reference = answers.get(chat.last_user)
        if reference is None:
            return f"Graded as asked.\nSCORE: {round(10 * quality)}"
        with lock:
            right = rng.random() < quality
        return reference if right else WRONG_ANSWER

    return reply


def script_fleet(fleet: Fleet, profiles: Mapping[str, Profile], cases: Iterable[Case]) -> None:
    """Script each of ``fleet``'s simulators (by provider type) with its profile."""
    known = list(cases)
    for ptype, profile in profiles.items():
        script = fleet[ptype].script
        script.reply = case_replier(known, profile.quality, seed=profile.seed)
        script.latency_s = profile.latency_s
        script.chunk_delay_s = profile.chunk_delay_s
        script.error_rate = profile.error_rate
        script.error_status = profile.error_status
        script.rng = random.Random(profile.seed)
