"""Polyroute.fuse on the simulators: the four methods, partial failure, early stop, the cost
cap, the ledger and the metrics."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from sqlalchemy import select

from fusion.support import PANEL, PRICE, MakeClient, settings
from polyroute.client import Polyroute
from polyroute.config import Config, validate
from polyroute.errors import (
    BudgetExceeded,
    ConfigError,
    FusionCostCapError,
    NoCandidateError,
    NotEnoughAnswersError,
)
from polyroute.fusion import CANCELLED_EARLY, FusionMetrics, comparison_key, member_confidence
from polyroute.ledger._schema import usage
from polyroute.ledger._store import Store
from polyroute.sync import SyncPolyroute
from polyroute.testing import Fleet
from polyroute.types import ChatResponse, Usage

Q = "What is 6 x 7?"


async def ledger_rows(pr: Polyroute) -> list[dict[str, Any]]:
    await pr.ledger.flush()

    def read(store: Store) -> list[dict[str, Any]]:
        with store.read() as c:
            return [dict(r) for r in c.execute(select(usage).order_by(usage.c.id)).mappings()]

    return await pr.ledger.run(read)


@pytest.mark.usefixtures("answers")
async def test_majority_returns_the_largest_group(make: MakeClient) -> None:
    pr = make()
    fused = await pr.fuse(Q, providers=PANEL, method="majority")
    assert fused.result == "42"
    assert fused.method == "majority"
    assert fused.agreement == pytest.approx(2 / 3)
    assert fused.confidence == pytest.approx(2 / 3)
    assert fused.groups == ((0, 1), (2,)) and fused.winner == 0
    assert [r.group for r in fused.responses] == [0, 0, 1]
    assert all(r.ok and r.confidence == 1.0 for r in fused.responses)
    assert [r.provider for r in fused.responses] == PANEL
    costs = [r.cost_usd for r in fused.responses]
    assert all(c is not None and c > 0 for c in costs)
    assert fused.total_cost_usd == pytest.approx(math.fsum(c for c in costs if c is not None))
    assert fused.agreed  # 0.67 >= the default min_agreement 0.66


async def test_config_method_and_min_agreement_are_the_defaults(
    make: MakeClient, fleet: Fleet
) -> None:
    for pid, reply in zip(PANEL, ("The answer is 42.", "Answer: 42", "**41**"), strict=True):
        fleet[pid].script.reply = reply
    pr = make(method="weighted", min_agreement=0.9)
    fused = await pr.fuse(Q, providers=PANEL)
    assert fused.method == "weighted"
    assert fused.result == "The answer is 42."  # normalised: three spellings, two answers
    assert fused.min_agreement == 0.9 and not fused.agreed


@pytest.mark.usefixtures("answers")
async def test_weighted_follows_the_weights(make: MakeClient) -> None:
    even = await make().fuse(Q, providers=PANEL, method="weighted")
    assert even.result == "42"
    assert even.confidence == pytest.approx(2 / 3)

    # google (41) outweighs openai and anthropic together: 0.9 > 0.3 + 0.3
    pr = make(weights={"openai": 0.3, "anthropic": 0.3, "google": 0.9})
    fused = await pr.fuse(Q, providers=PANEL, method="weighted")
    assert fused.result == "41"
    assert fused.winner == 1
    assert fused.agreement == pytest.approx(1 / 3)  # one answer of three
    assert fused.confidence == pytest.approx(0.9 / 1.5)  # its share of the weighted vote


@pytest.mark.usefixtures("answers")
async def test_weighted_ties_go_to_the_earliest_group(make: MakeClient) -> None:
    pr = make(weights={"openai": 0.25, "anthropic": 0.25, "google": 0.5})
    fused = await pr.fuse(Q, providers=PANEL, method="weighted")
    assert fused.result == "42" and fused.confidence == pytest.approx(0.5)


def test_member_confidence_by_finish() -> None:
    def response(finish: Any) -> ChatResponse:
        return ChatResponse("x", "m", finish, Usage())

    assert member_confidence(response("stop")) == 1.0
    assert member_confidence(response("length")) == 0.5
    assert member_confidence(response("content_filter")) == 0.25
    assert member_confidence(response("other")) == 0.75


PARAPHRASES = (
    "The capital of France is Paris.",
    "Paris is where France has its seat of government.",
    "It's Lyon, I believe.",
)


def paris_or_not(text: str) -> list[float]:
    """A scripted "semantic" embedding: what matters is whether the text names Paris."""
    return [1.0, 0.05 * len(text) % 0.1, 0.0] if "paris" in text else [0.0, 0.1, 1.0]


async def test_semantic_groups_paraphrases_that_characters_would_split(
    make: MakeClient, fleet: Fleet
) -> None:
    for pid, reply in zip(PANEL, PARAPHRASES, strict=True):
        fleet[pid].script.reply = reply
    fleet["openai"].script.embedding = paris_or_not
    pr = make(embedding_provider="openai")
    lexical = await pr.fuse(Q, providers=PANEL, method="majority")
    assert lexical.groups == ((0,), (1,), (2,))  # characters alone: three different answers

    before = fleet["openai"].calls
    fused = await pr.fuse(Q, providers=PANEL, method="semantic")
    assert fused.groups == ((0, 1), (2,))
    assert fused.result == PARAPHRASES[0]
    assert fused.agreement == pytest.approx(2 / 3)
    # the vectors came over the wire: one embeddings call with the three answers' keys
    embeds = [r for r in fleet["openai"].requests[before:] if r.path == "/v1/embeddings"]
    assert len(embeds) == 1
    assert embeds[0].body["model"] == "text-embedding-3-small"
    assert embeds[0].body["input"] == [comparison_key(p) for p in PARAPHRASES]
    assert fused.embeddings is not None and fused.embeddings.provider == "openai"
    assert fused.total_cost_usd is not None
    rows = await ledger_rows(pr)
    assert any(r["model"] == "text-embedding-3-small" and r["status"] == "ok" for r in rows)


async def test_semantic_with_a_named_model_on_ollama(make: MakeClient, fleet: Fleet) -> None:
    for pid, reply in zip(PANEL, PARAPHRASES, strict=True):
        fleet[pid].script.reply = reply
    fleet["ollama"].script.embedding = paris_or_not
    pr = make(embedding_provider="ollama/nomic-embed-text:latest")
    fused = await pr.fuse(Q, providers=PANEL, method="semantic")
    assert fused.groups == ((0, 1), (2,))
    assert fleet["ollama"].last_request().path == "/api/embed"


@pytest.mark.parametrize(
    ("embedding_provider", "error"),
    [
        ("", r"fusion\.embedding_provider: semantic fusion needs a provider that can embed"),
        ("anthropic", r"provider 'anthropic' \(anthropic\) cannot embed"),
        ("nope", r"fusion\.embedding_provider: no provider 'nope'"),
    ],
)
@pytest.mark.usefixtures("answers")
async def test_semantic_config_errors_come_before_any_call(
    make: MakeClient, fleet: Fleet, embedding_provider: str, error: str
) -> None:
    pr = make(embedding_provider=embedding_provider)
    calls = {pid: fleet[pid].calls for pid in PANEL}
    with pytest.raises(ConfigError, match=error):
        await pr.fuse(Q, providers=PANEL, method="semantic")
    assert {pid: fleet[pid].calls for pid in PANEL} == calls


@pytest.mark.usefixtures("answers")
async def test_semantic_without_an_embedding_model(make: MakeClient) -> None:
    pr = make(
        embedding_provider="chatonly",
        providers={"chatonly": {"type": "openai-compatible", "base_url": "http://127.0.0.1:9"}},
    )
    with pytest.raises(ConfigError, match="no embedding model known for provider 'chatonly'"):
        await pr.fuse(Q, providers=PANEL, method="semantic")


@pytest.mark.usefixtures("answers")
async def test_synthesis_gives_every_answer_to_the_synthesizer(
    make: MakeClient, fleet: Fleet
) -> None:
    fleet["mistral"].script.reply = "Forty-two."
    pr = make(synthesizer="mistral/mistral-small-latest")
    fused = await pr.fuse(Q, providers=PANEL, method="synthesis", system="Be brief.")
    assert fused.result == "Forty-two."
    assert fused.method == "synthesis" and fused.winner is None
    assert fused.agreement == pytest.approx(2 / 3) == fused.confidence
    body = fleet["mistral"].last_request().body
    assert body["model"] == "mistral-small-latest"
    prompt = "\n".join(m["content"] for m in body["messages"])
    assert Q in prompt and "Be brief." in prompt
    assert "[1]\n42" in prompt and "[2]\n42" in prompt and "[3]\n41" in prompt
    synth = fused.synthesizer
    assert synth is not None and synth.provider == "mistral" and synth.cost_usd
    members = math.fsum(r.cost_usd or 0 for r in fused.responses)
    assert fused.total_cost_usd == pytest.approx(members + synth.cost_usd)
    rows = await ledger_rows(pr)
    assert sorted(r["provider"] for r in rows) == sorted([*PANEL, "mistral"])


@pytest.mark.usefixtures("answers")
async def test_synthesis_errors(make: MakeClient, fleet: Fleet) -> None:
    with pytest.raises(ConfigError, match=r"fusion\.synthesizer: synthesis needs a synthesizer"):
        await make().fuse(Q, providers=PANEL, method="synthesis")
    with pytest.raises(ConfigError, match=r"fusion\.synthesizer: no provider 'gone'"):
        await make(synthesizer="gone/model").fuse(Q, providers=PANEL, method="synthesis")
    fleet["mistral"].script.fail_next(1, 400)
    from polyroute.errors import BadRequestError

    with pytest.raises(BadRequestError):  # the synthesizer's own error: the CLI's exit 4
        await make(synthesizer="mistral").fuse(Q, providers=PANEL, method="synthesis")


@pytest.mark.usefixtures("answers")
async def test_a_failing_member_is_listed_and_the_others_decide(
    make: MakeClient, fleet: Fleet
) -> None:
    fleet["google"].script.fail_next(1, 500)
    pr = make()
    fused = await pr.fuse(Q, providers=PANEL)
    assert fused.result == "42" and fused.agreement == 1.0
    failed = fused.responses[2]
    assert (failed.provider, failed.ok, failed.group, failed.confidence) == (
        "google",
        False,
        None,
        0,
    )
    assert failed.error is not None and "HTTP 500" in failed.error
    assert fused.as_dict()["responses"][2]["ok"] is False
    assert fused.answers == 2


@pytest.mark.usefixtures("answers")
async def test_a_member_past_its_timeout_is_listed_and_the_others_decide(
    make: MakeClient, fleet: Fleet
) -> None:
    fleet["anthropic"].script.hang_next(2.0)
    pr = make()
    t0 = time.perf_counter()
    fused = await pr.fuse(Q, providers=PANEL, member_timeout_s=0.3)
    assert time.perf_counter() - t0 < 1.5
    late = fused.responses[1]
    assert late.provider == "anthropic" and not late.ok
    assert (late.error or "").startswith("no answer within 0.3s")
    assert fused.answers == 2
    # a 1-1 tie: the earliest group (openai's 42) wins
    assert fused.result == "42" and fused.agreement == 0.5
    rows = {r["provider"]: r for r in await ledger_rows(pr)}
    assert rows["anthropic"]["status"] == "error"
    assert rows["anthropic"]["error_type"] == "api_timeout"


async def test_an_empty_answer_is_not_an_answer(make: MakeClient, fleet: Fleet) -> None:
    for pid, reply in zip(PANEL, ("42", "", "42"), strict=True):
        fleet[pid].script.reply = reply
    fused = await make().fuse(Q, providers=PANEL)
    assert fused.responses[1].ok is False and fused.responses[1].error == "an empty answer"
    assert fused.agreement == 1.0


@pytest.mark.usefixtures("answers")
async def test_fewer_than_two_answers_is_a_clear_error(make: MakeClient, fleet: Fleet) -> None:
    fleet["anthropic"].script.fail_next(1, 503)
    fleet["google"].script.fail_next(1, 401)
    pr = make()
    with pytest.raises(NotEnoughAnswersError) as caught:
        await pr.fuse(Q, providers=PANEL)
    msg = str(caught.value)
    assert msg.startswith("fusion needs at least 2 answers, got 1 of 3: ")
    assert "anthropic/claude" in msg and "HTTP 503" in msg and "HTTP 401" in msg
    assert [r.ok for r in caught.value.responses] == [True, False, False]
    assert len(await ledger_rows(pr)) == 3  # every member billed and recorded all the same


@pytest.mark.usefixtures("answers")
async def test_budgets_that_refuse_the_panel_raise_budget_exceeded(make: MakeClient) -> None:
    pr = make()
    await pr.ledger.set_budget("global", daily_usd=0.0)
    with pytest.raises(BudgetExceeded):
        await pr.fuse(Q, providers=PANEL)
    assert await ledger_rows(pr) == []  # refused before any call
    d = pr.route(Q, priority="quality")
    assert all(e.reason.startswith("over budget") for e in d.excluded if e.provider in PANEL)


@pytest.mark.usefixtures("answers")
async def test_a_member_refused_by_its_budget_is_listed(make: MakeClient) -> None:
    pr = make()
    await pr.ledger.set_budget("provider:google", daily_usd=0.0)
    fused = await pr.fuse(Q, providers=PANEL)
    google = fused.responses[2]
    assert not google.ok and (google.error or "").startswith("daily budget for provider:google")
    assert fused.result == "42"


@pytest.mark.usefixtures("answers")
async def test_an_open_breaker_skips_the_member_without_a_call(
    make: MakeClient, fleet: Fleet
) -> None:
    pr = make()
    breaker = pr.breakers.get("google")
    for _ in range(5):
        breaker.failure()
    before = fleet["google"].calls
    fused = await pr.fuse(Q, providers=PANEL)
    assert fleet["google"].calls == before
    assert (fused.responses[2].error or "").startswith("circuit breaker open")


@pytest.mark.usefixtures("answers")
async def test_failures_and_successes_reach_the_breakers(make: MakeClient, fleet: Fleet) -> None:
    pr = make(router={"circuit_breaker": {"failure_threshold": 1}})
    fleet["google"].script.fail_next(1, 503)
    await pr.fuse(Q, providers=PANEL)
    assert pr.breakers.get("google").state == "open"
    assert pr.breakers.get("openai").state == "closed"


@pytest.mark.usefixtures("answers")
async def test_early_stop_cancels_the_rest(make: MakeClient, fleet: Fleet) -> None:
    # the two that agree answer after a moment: by then google's call is surely in flight
    # (cancelled while still reserving, before any call, a member has nothing to record)
    fleet["openai"].script.latency_s = fleet["anthropic"].script.latency_s = 0.2
    fleet["google"].script.latency_s = 3.0
    pr = make()
    t0 = time.perf_counter()
    fused = await pr.fuse(Q, providers=PANEL, early_stop=True)
    assert time.perf_counter() - t0 < 2.0
    assert fused.early_stopped and fused.result == "42" and fused.agreement == 1.0
    google = fused.responses[2]
    assert (google.ok, google.error) == (False, CANCELLED_EARLY)
    rows = {r["provider"]: r for r in await ledger_rows(pr)}
    assert rows["google"]["status"] == "cancelled"
    assert rows["openai"]["status"] == rows["anthropic"]["status"] == "ok"
    assert fused.as_dict()["early_stopped"] is True


@pytest.mark.usefixtures("answers")
async def test_early_stop_waits_while_the_answers_disagree(make: MakeClient, fleet: Fleet) -> None:
    fleet["anthropic"].script.reply = "43"
    fleet["google"].script.latency_s = 0.2
    fused = await make().fuse(Q, providers=PANEL, early_stop=True, min_agreement=0.66)
    assert not fused.early_stopped and fused.answers == 3


@pytest.mark.usefixtures("answers")
async def test_a_cancelled_fusion_cancels_its_members(make: MakeClient, fleet: Fleet) -> None:
    fleet["google"].script.latency_s = 3.0
    pr = make()
    task = asyncio.create_task(pr.fuse(Q, providers=PANEL))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = {r["provider"]: r for r in await ledger_rows(pr)}
    assert rows["google"]["status"] == "cancelled"
    assert pr.breakers.get("google").state == "closed"


@pytest.mark.usefixtures("answers")
async def test_the_cost_cap_refuses_before_any_call(make: MakeClient, fleet: Fleet) -> None:
    pr = make()
    calls = {pid: fleet[pid].calls for pid in PANEL}
    # each member: prompt bound ceil(14 / 3) + 8 = 13 tokens in, 100 out, at PRICE
    member = (13 * PRICE[0] + 100 * PRICE[1]) / 1e6
    with pytest.raises(FusionCostCapError, match=r"worst-case cost \$0\.00248 is over") as caught:
        await pr.fuse(Q, providers=PANEL, max_tokens=100, max_cost_usd=0.002)
    assert caught.value.worst_case_usd == pytest.approx(3 * member)
    assert {pid: fleet[pid].calls for pid in PANEL} == calls
    assert await ledger_rows(pr) == []
    fused = await pr.fuse(Q, providers=PANEL, max_tokens=100, max_cost_usd=3 * member)
    assert fused.result == "42"


@pytest.mark.usefixtures("answers")
async def test_the_cost_cap_counts_the_synthesizer(make: MakeClient) -> None:
    pr = make(synthesizer="mistral")
    member = (13 * PRICE[0] + 100 * PRICE[1]) / 1e6
    with pytest.raises(FusionCostCapError, match=r"synthesizer mistral/mistral-small-latest"):
        await pr.fuse(
            Q, providers=PANEL, method="synthesis", max_tokens=100, max_cost_usd=3 * member
        )


@pytest.mark.usefixtures("answers")
async def test_an_unpriced_member_cannot_fit_a_cost_cap(make: MakeClient) -> None:
    pr = make()
    with pytest.raises(FusionCostCapError, match="openai/gpt-unknown-9 is unpriced") as caught:
        await pr.fuse(
            Q, providers=["openai/gpt-unknown-9", "anthropic"], max_tokens=10, max_cost_usd=1.0
        )
    assert caught.value.worst_case_usd is None


@pytest.mark.usefixtures("answers")
async def test_every_member_is_recorded_in_the_ledger(make: MakeClient) -> None:
    pr = make()
    fused = await pr.fuse(Q, providers=PANEL)
    report = await pr.usage(by="provider")
    by = {r.key: r for r in report.rows}
    assert set(by) == set(PANEL)
    assert all(by[p].requests == 1 and by[p].failed == 0 for p in PANEL)
    assert report.total_cost_usd == pytest.approx(fused.total_cost_usd)


@pytest.mark.usefixtures("answers")
async def test_a_panel_by_routing_takes_distinct_providers(make: MakeClient) -> None:
    pr = make(max_providers=3, router={"max_attempts": 1})  # no fallbacks: it decides again
    fused = await pr.fuse(Q)
    providers = [r.provider for r in fused.responses]
    assert len(providers) == 3 == len(set(providers))
    assert all(r.ok for r in fused.responses)


async def test_a_single_eligible_provider_is_not_a_panel(fleet: Fleet) -> None:
    s = settings(fleet)
    for pid in ("anthropic", "google", "mistral", "ollama"):
        s["providers"][pid]["enabled"] = False
    async with Polyroute(Config(validate(s, "test"), "test", fleet.env())) as pr:
        with pytest.raises(NotEnoughAnswersError, match="routing found one eligible provider"):
            await pr.fuse(Q)
        with pytest.raises(NoCandidateError):
            await pr.fuse(Q, max_tokens=10**7)  # nothing has that much room


@pytest.mark.usefixtures("answers")
async def test_panel_names(make: MakeClient) -> None:
    pr = make()
    fused = await pr.fuse(Q, providers=["openai/gpt-4o", "anthropic"])
    assert (fused.responses[0].provider, fused.responses[0].model) == ("openai", "gpt-4o")
    with pytest.raises(ValueError, match="at least 2 panel members"):
        await pr.fuse(Q, providers=["openai"])
    with pytest.raises(ValueError, match="listed twice"):
        await pr.fuse(Q, providers=["openai", "openai/gpt-4o-mini"])
    with pytest.raises(ConfigError, match=r"providers: no provider 'nope'"):
        await pr.fuse(Q, providers=["openai", "nope"])
    with pytest.raises(ValueError, match="unknown fusion method"):
        await pr.fuse(Q, providers=PANEL, method="vote")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_agreement"):
        await pr.fuse(Q, providers=PANEL, min_agreement=1.5)


@pytest.mark.usefixtures("answers")
async def test_fusion_metrics(make: MakeClient, fleet: Fleet) -> None:
    pr = make()
    assert pr.fusion_metrics() == FusionMetrics()
    first = await pr.fuse(Q, providers=PANEL)  # 2/3: medium
    fleet["google"].script.reply = "42"
    second = await pr.fuse(Q, providers=PANEL)  # 3/3: high
    m = pr.fusion_metrics()
    assert (m.fusions, m.high, m.medium, m.low) == (2, 1, 1, 0)
    assert m.average_agreement == pytest.approx((2 / 3 + 1) / 2)
    assert first.total_cost_usd is not None and second.total_cost_usd is not None
    assert m.average_cost_usd == pytest.approx((first.total_cost_usd + second.total_cost_usd) / 2)
    assert m.as_dict()["agreement"] == {"high": 1, "medium": 1, "low": 0}
    fleet["google"].script.fail_next(1, 500)
    fleet["anthropic"].script.fail_next(1, 500)
    with pytest.raises(NotEnoughAnswersError):
        await pr.fuse(Q, providers=PANEL)
    assert pr.fusion_metrics().fusions == 2  # failed fusions are not counted


@pytest.mark.usefixtures("answers")
def test_the_sync_facade_fuses(fleet: Fleet) -> None:
    config = Config(validate(settings(fleet), "test"), "test", fleet.env())
    with SyncPolyroute(config) as pr:
        fused = pr.fuse(Q, providers=PANEL, method="majority")
        assert fused.result == "42" and fused.agreement == pytest.approx(2 / 3)
        assert pr.fusion_metrics().fusions == 1


@pytest.mark.usefixtures("answers")
async def test_as_dict_is_the_design_shape(make: MakeClient) -> None:
    out = (await make().fuse(Q, providers=PANEL)).as_dict()
    design = {"result", "method", "confidence", "agreement", "total_cost_usd", "responses"}
    assert design <= set(out)
    member = {"provider", "model", "content", "confidence", "cost_usd", "ok", "error"}
    assert all(member <= set(r) for r in out["responses"])
    assert out["groups"] == [[0, 1], [2]] and out["answers"] == 3


@pytest.mark.usefixtures("answers")
async def test_a_failing_embeddings_call_fails_the_semantic_fusion(
    make: MakeClient, fleet: Fleet
) -> None:
    from polyroute.errors import InternalServerError

    fleet["mistral"].script.fail_next(1, 500)
    pr = make(embedding_provider="mistral")
    with pytest.raises(InternalServerError):
        await pr.fuse(Q, providers=PANEL, method="semantic")
    rows = await ledger_rows(pr)
    assert [r["status"] for r in rows if r["provider"] == "mistral"] == ["error"]


@pytest.mark.usefixtures("answers")
async def test_a_budget_refusing_the_embeddings_call(make: MakeClient) -> None:
    pr = make(embedding_provider="mistral")
    await pr.ledger.set_budget("provider:mistral", daily_usd=0.0)
    with pytest.raises(BudgetExceeded):
        await pr.fuse(Q, providers=PANEL, method="semantic")
    assert "mistral" in {e.provider for e in pr.route(Q).excluded}


@pytest.mark.usefixtures("answers")
async def test_a_synthesizer_without_an_answer(make: MakeClient, fleet: Fleet) -> None:
    from polyroute.errors import ProviderError

    fleet["mistral"].script.reply = ""
    pr = make(synthesizer="mistral")
    with pytest.raises(ProviderError, match="synthesizer mistral-small-latest: an empty answer"):
        await pr.fuse(Q, providers=PANEL, method="synthesis")
    fleet["mistral"].script.reply = "ok"
    breaker = pr.breakers.get("mistral")
    for _ in range(5):
        breaker.failure()
    with pytest.raises(ProviderError, match=r"synthesizer .*: circuit breaker open"):
        await pr.fuse(Q, providers=PANEL, method="synthesis")


@pytest.mark.usefixtures("answers")
async def test_routing_stops_when_the_rest_are_ineligible(fleet: Fleet) -> None:
    s = settings(fleet, max_providers=3)
    s["router"] = {"max_attempts": 1}
    for pid in ("google", "mistral", "ollama"):
        s["providers"][pid]["enabled"] = False
    s["providers"]["down"] = {
        "type": "ollama",
        "base_url": "http://127.0.0.1:9",
        "models": ["tiny"],
    }
    async with Polyroute(Config(validate(s, "test"), "test", fleet.env())) as pr:
        await pr.health_monitor.check_all()
        fused = await pr.fuse(Q)
        assert sorted(r.provider for r in fused.responses) == ["anthropic", "openai"]


async def test_the_wall_clock_guard_times_out_a_call_the_http_timeout_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from polyroute.config import CircuitBreakerConfig
    from polyroute.fusion import Caller
    from polyroute.fusion import _panel as panel
    from polyroute.router.breaker import Breakers
    from polyroute.router.decision import Target
    from polyroute.types import ChatRequest, Message

    class TricklingMeter:
        """A vendor that keeps the connection alive: the HTTP timeout never fires."""

        async def complete(self, client: object, request: object, *, timeout_s: float) -> None:
            await asyncio.sleep(10)

    monkeypatch.setattr(panel, "GUARD_GRACE_S", 0.05)
    breakers = Breakers(CircuitBreakerConfig(failure_threshold=1))
    caller = Caller(TricklingMeter(), {"p": object()}, breakers, None, 0.05)  # type: ignore[arg-type]
    outcome = await caller.call(Target("p", "m"), ChatRequest("m", (Message.user("hi"),)))
    assert (outcome.kind, outcome.error) == ("failed", "no answer within 0.05s")
    assert breakers.get("p").state == "open"


async def test_embeddings_of_mixed_dimensions_are_an_invalid_response(
    make: MakeClient, fleet: Fleet
) -> None:
    from polyroute.errors import InvalidResponseError

    for pid, reply in zip(PANEL, ("42", "42", "41"), strict=True):
        fleet[pid].script.reply = reply
    fleet["mistral"].script.embedding = lambda text: [1.0] * len(text)  # 2, 2 and... 2: fine
    fleet["google"].script.reply = "4"  # now one vector has 1 dimension
    pr = make(embedding_provider="mistral")
    with pytest.raises(InvalidResponseError, match=r"3 vectors of \[1, 2\] dimensions"):
        await pr.fuse(Q, providers=PANEL, method="semantic")
