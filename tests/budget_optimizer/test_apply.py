"""Applying an allocation on a real ledger: every budget and the history in one
transaction, an event per changed budget, and one auto-adjust per interval."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection

from budget_optimizer.synthetic import Profile, days_of, record
from polyroute.budgeting import analyze_ledger, apply, history, propose
from polyroute.hub import BudgetChanged, HubEvent
from polyroute.ledger import BudgetLimits, Ledger, provider_scope
from polyroute.ledger._store import Store

NOW = datetime(2026, 3, 20, 15, tzinfo=UTC).timestamp()
TODAY = date(2026, 3, 20)
PROFILES = {
    "a": Profile(base=3.0, slope=0.05),
    "b": Profile(base=2.0, weekly=True),
    "c": Profile(base=1.0, outages=frozenset(range(40, 45))),
}
PROVIDERS = [*PROFILES, "new"]


class Boom(Exception):
    pass


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[Ledger]:
    led = Ledger(
        db_url,
        budgets={provider_scope("a"): BudgetLimits(daily_usd=5.0, monthly_usd=40.0)},
        clock=lambda: NOW,
    )
    await record(led, days_of(PROFILES, TODAY - timedelta(days=60), 60))
    yield led
    await led.aclose()


def watch(led: Ledger) -> list[HubEvent]:
    seen: list[HubEvent] = []
    led.hub.subscribe(seen.append, "budget_changed")
    return seen


async def monthly(led: Ledger) -> dict[str, tuple[float | None, float | None, str]]:
    statuses = await led.budgets(provider_scope(p) for p in PROVIDERS)
    return {
        s.scope.removeprefix("provider:"): (s.limits.daily_usd, s.limits.monthly_usd, s.source)
        for s in statuses
        if s.scope != "global"
    }


async def test_apply_sets_every_budget_records_it_and_emits_changes(ledger: Ledger) -> None:
    events = watch(ledger)
    analysis = await analyze_ledger(ledger, PROVIDERS, NOW)
    assert [p.history_days for p in analysis.providers] == [60, 60, 60, 0]
    assert analysis.providers[0].limit_usd == 40.0
    proposal = propose(analysis, 400.0, 25.0, 200.0)
    applied = await apply(ledger, proposal, source="cli", now=NOW)
    assert applied is not None and applied.applied and applied.as_dict()["applied"] is True
    got = await monthly(ledger)
    want = {a.provider: a.proposed_usd for a in proposal.allocations}
    assert {p: m for p, (_, m, _) in got.items()} == want
    assert got["a"][0] == 5.0  # the daily limit is kept
    assert all(src == "cli" for _, _, src in got.values())
    assert sum(want.values()) == pytest.approx(400.0)
    assert want["new"] == 25.0
    assert [type(e) for e in events] == [BudgetChanged] * 4
    first = events[0]
    assert isinstance(first, BudgetChanged)
    assert (first.scope, first.period, first.previous_usd) == ("provider:a", "monthly", 40.0)
    assert first.limit_usd == want["a"] and first.reason == proposal.allocations[0].reason
    [entry] = await history(ledger)
    assert (entry.source, entry.total_usd, entry.method) == ("cli", 400.0, proposal.method)
    assert [(c.provider, c.previous_usd, c.new_usd) for c in entry.changes] == [
        ("a", 40.0, want["a"]),
        ("b", None, want["b"]),
        ("c", None, want["c"]),
        ("new", None, 25.0),
    ]
    assert entry.as_dict()["at"] == "2026-03-20T15:00:00+00:00"
    # the same allocation again changes nothing: recorded, but no event
    again = propose(await analyze_ledger(ledger, PROVIDERS, NOW), 400.0, 25.0, 200.0)
    assert [a.current_usd for a in again.allocations] == [want[p] for p in PROVIDERS]
    await apply(ledger, again, source="cli", now=NOW)
    assert len(events) == 4 and len(await history(ledger)) == 2


@pytest.mark.parametrize("where", ["second budget", "history"])
async def test_a_failure_mid_write_changes_nothing(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    events = watch(ledger)
    before = await monthly(ledger)
    if where == "second budget":
        original = Store._put_budget
        calls = []

        def put(self: Store, c: Connection, *args: Any) -> None:
            calls.append(args[0])
            if len(calls) == 2:
                raise Boom
            original(self, c, *args)

        monkeypatch.setattr(Store, "_put_budget", put)
    else:

        def add(*args: Any) -> None:
            raise Boom

        monkeypatch.setattr("polyroute.budgeting._sql.add_entry", add)
    proposal = propose(await analyze_ledger(ledger, PROVIDERS, NOW), 400.0, 25.0, 200.0)
    with pytest.raises(Boom):
        await apply(ledger, proposal, source="cli", now=NOW)
    if where == "second budget":
        assert len(calls) == 2  # the first provider's budget was written, then rolled back
    monkeypatch.undo()
    assert await monthly(ledger) == before
    assert await history(ledger) == []
    assert events == []


async def test_auto_applies_once_per_interval_whoever_runs_it(ledger: Ledger) -> None:
    proposal = propose(await analyze_ledger(ledger, PROVIDERS, NOW), 400.0, 25.0, 200.0)
    day = 86_400.0
    first = await apply(ledger, proposal, source="auto", now=NOW, not_before=NOW - 0.9 * day)
    assert first is not None
    # a second worker, a minute later, in the same interval: not due
    late = NOW + 60
    assert (
        await apply(ledger, proposal, source="auto", now=late, not_before=late - 0.9 * day) is None
    )
    # a CLI apply is not an auto-adjust and does not count against it
    assert await apply(ledger, proposal, source="cli", now=late) is not None
    nxt = NOW + day
    assert await apply(ledger, proposal, source="auto", now=nxt, not_before=nxt - 0.9 * day)
    assert [e.source for e in await history(ledger)] == ["auto", "cli", "auto"]


async def test_an_amount_out_of_range_is_refused_before_any_write(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="monthly_usd of provider:b must be 0 or more"):
        await ledger.set_monthly_budgets({provider_scope("a"): 10.0, provider_scope("b"): -1.0})
    assert (await monthly(ledger))["a"][1] == 40.0
    # None removes a limit, like `budget set --monthly none`
    changed = await ledger.set_monthly_budgets({provider_scope("a"): None})
    assert changed == {provider_scope("a"): (40.0, None)}
    assert (await monthly(ledger))["a"][:2] == (5.0, None)
