"""The blocking facade, for scripts."""

from __future__ import annotations

from polyroute.config import Config, validate
from polyroute.events import StreamEnd, TextDelta
from polyroute.sync import SyncPolyroute
from polyroute.testing import Fleet


def test_sync_facade_asks_streams_routes_and_reports() -> None:
    with Fleet(("openai", "ollama"), reply="sync works") as fleet:
        settings = fleet.settings(storage={"url": "sqlite://"})
        with SyncPolyroute(Config(validate(settings, "test"), "test", fleet.env())) as pr:
            answer = pr.complete("hi", provider="openai")
            assert answer.content == "sync works" and answer.provider == "openai"
            events = list(pr.stream("hi", provider="ollama"))
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "sync works"
            assert isinstance(events[-1], StreamEnd)
            # stopping early closes the provider's stream and records the attempt
            for e in pr.stream("hi", provider="openai"):
                if isinstance(e, TextDelta):
                    break
            decision = pr.route("hi", priority="cost")
            assert decision.provider == "ollama"  # free beats priced
            report = pr.usage(by="provider")
            assert {r.key: r.requests for r in report.rows} == {"openai": 2, "ollama": 1}
            assert all(c.ok for c in pr.health())
            assert pr.budgets()  # every provider listed, none limited
