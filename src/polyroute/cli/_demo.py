"""``polyroute demo``: an offline tour on simulated providers, nothing to configure."""

from __future__ import annotations

from typing import Any

import click

from polyroute.cli._common import common_options, run, table, usd
from polyroute.cli._common import console as make_console

PROMPT = "In one sentence: why use more than one LLM provider?"
QUESTION = "What is 6 x 7?"
# the fusion scene's panel: what each answers, and its [providers.ID] fusion_weight
FUSION_PANEL = {
    "openai": ("The answer is 42.", 0.3),
    "anthropic": ("42", 0.3),
    "google": ("41", 0.9),
}
HARD = (
    "Design a fault-tolerant, multi-region architecture for a payments ledger; "
    "analyze the trade-offs between consistency and availability step by step."
)


@click.command()
@common_options
def demo() -> None:
    """An offline tour on simulated vendors (loopback only, no keys)."""

    async def main() -> int:
        from polyroute.client import Polyroute
        from polyroute.config import Config, validate
        from polyroute.testing import Fleet

        console = make_console()
        with Fleet() as fleet:
            console.print(
                f"[bold]polyroute demo[/] · {len(fleet.sims)} simulated vendors on loopback, "
                "speaking each vendor's real wire format\n"
            )
            # the demo's ledger is in memory: simulated spend never enters the user's records
            settings = fleet.settings(
                storage={"url": "sqlite://"},
                router={"circuit_breaker": {"failure_threshold": 2, "reset_timeout_s": 1.0}},
            )
            for pid, (_, weight) in FUSION_PANEL.items():
                settings["providers"][pid]["fusion_weight"] = weight
            config = Config(validate(settings, "embedded demo config"), "embedded", fleet.env())
            async with Polyroute(config) as pr:
                rows = []
                for pid in config.enabled():
                    a = await pr.complete(PROMPT, provider=pid, max_tokens=64)
                    rows.append(
                        [
                            pid,
                            a.model,
                            a.content,
                            f"{a.usage.prompt_tokens}/{a.usage.completion_tokens}",
                            usd(a.cost_usd),
                            f"{a.latency_ms:.1f} ms",
                        ]
                    )
                _show(
                    console,
                    "1. One question to each vendor",
                    ["provider", "model", "answer", "tokens in/out", "cost", "latency"],
                    rows,
                )

                console.print("[bold]2. Streaming[/] from anthropic, token by token:")
                stream = pr.stream(PROMPT, provider="anthropic", max_tokens=64)
                async for event in stream:
                    if event.kind == "text":
                        console.print(event.text, end="", highlight=False)
                console.print()
                if stream.answer is not None:
                    console.print(
                        f"[dim]   {stream.answer.usage.total_tokens} tokens, {usd(stream.answer.cost_usd)}[/]\n"
                    )

                await _errors_scene(console, pr, fleet)
                await _routing_scene(console, pr)
                await _fallback_and_breaker_scene(console, pr, fleet)
                await _budget_scene(console, pr, fleet)
                await _fusion_scene(console, pr, fleet)
            await _bench_scene(console, fleet, settings)
            await _optimizer_scene(console, fleet, settings)
        console.print(
            "Next: [bold]polyroute models[/] for the catalog and prices; "
            "[bold]polyroute ask --help[/] to ask your own providers."
        )
        return 0

    run(main)


async def _errors_scene(console: Any, pr: Any, fleet: Any) -> None:
    from polyroute.errors import ProviderError
    from polyroute.types import ChatRequest, Message

    console.print("[bold]3. Failures become typed errors[/] (scripted on the simulators):")
    scenes = [
        ("anthropic", 529, "Anthropic overloaded"),
        ("google", 429, "Gemini quota exhausted"),
        ("openai", 401, "a revoked OpenAI key"),
        ("openai", 0, "a stream cut mid-answer"),
    ]
    rows = []
    for pid, status, what in scenes:
        client = pr.client(pid)
        request = ChatRequest(client.provider.default_model or "", (Message.user(PROMPT),))
        try:
            if status:
                fleet[pid].script.fail_next(1, status, retry_after=2 if status == 429 else None)
                await client.complete(request)
            else:
                fleet[pid].script.cut_stream(after_chunks=2)
                async for _ in client.stream(request):
                    pass
        except ProviderError as exc:
            rows.append(
                [
                    what,
                    type(exc).__name__,
                    "-" if exc.status is None else str(exc.status),
                    exc.vendor_type or "-",
                    "retry, then fall back" if exc.retryable else "fall back at once",
                    "-" if exc.retry_after is None else f"{exc.retry_after:g}s",
                ]
            )
    _show(
        console,
        None,
        ["what happened", "error", "status", "vendor type", "the router will", "retry after"],
        rows,
    )


async def _routing_scene(console: Any, pr: Any) -> None:
    console.print(
        "[bold]4. Routing[/]: every (provider, model) pair is a candidate; a strategy ranks "
        "them, and the rest become the fallback list."
    )
    rows = []
    for priority, prompt, complexity in [
        ("cost", PROMPT, "auto"),
        ("quality", HARD, "auto"),
        ("balanced", PROMPT, "auto"),
        ("carbon", PROMPT, "auto"),
    ]:
        d = pr.route(prompt, priority=priority, complexity=complexity)
        rows.append(
            [
                priority,
                "hard design question" if prompt is HARD else "one-line question",
                f"{d.provider}/{d.model}",
                usd(d.estimated_cost_usd),
                ", ".join(f"{t.provider}/{t.model}" for t in d.fallbacks) or "-",
                str(len(d.excluded)),
            ]
        )
    _show(
        console,
        None,
        ["priority", "prompt", "chosen", "est. cost", "fallbacks", "excluded"],
        rows,
    )


async def _fallback_and_breaker_scene(console: Any, pr: Any, fleet: Any) -> None:
    import asyncio

    winner = pr.route(HARD, priority="quality")
    down = winner.provider
    sim = fleet[down]
    sim.script.fail_always(503)
    console.print(
        f"[bold]5. Fallback[/]: {down} now answers 503 to everything. The quality pick is "
        f"{down}/{winner.model}; it is retried once, then the next pair serves:"
    )
    a = await pr.complete(HARD, priority="quality", max_tokens=64)
    _show(
        console,
        None,
        ["attempt", "provider/model", "ok", "error", "latency"],
        [
            [
                str(i),
                f"{t.provider}/{t.model}",
                "yes" if t.ok else "no",
                t.error or "",
                f"{t.latency_ms:.1f} ms",
            ]
            for i, t in enumerate(a.attempts, 1)
        ],
    )
    breaker = pr.breakers.get(down)
    console.print(
        f"[bold]6. Circuit breaker[/]: two failures in a row opened {down}'s breaker "
        "(failure_threshold = 2, reset_timeout_s = 1 in this demo)."
    )
    rows = []

    async def step(what: str) -> None:
        before = sim.calls
        state = breaker.state
        d = pr.route(HARD, priority="quality")
        pair = (down, winner.model)
        excluded = next((e.reason for e in d.excluded if (e.provider, e.model) == pair), "eligible")
        answer = await pr.complete(HARD, priority="quality", max_tokens=64)
        rows.append(
            [
                what,
                state,
                excluded,
                str(sim.calls - before),
                f"{answer.provider}/{answer.model}",
                breaker.state,
            ]
        )

    await step("while open")
    await asyncio.sleep(1.05)
    sim.script.recover()
    await step("after 1 s, it recovered")
    _show(
        console,
        None,
        [
            "request",
            "breaker before",
            f"{down} in routing",
            f"calls to {down}",
            "served by",
            "breaker after",
        ],
        rows,
    )


async def _budget_scene(console: Any, pr: Any, fleet: Any) -> None:
    import asyncio

    from polyroute.errors import BudgetExceeded
    from polyroute.ledger import provider_scope, worst_case_usd
    from polyroute.types import ChatRequest, Message

    pid = "mistral"
    model = pr.config.settings.providers[pid].default_model
    entry = pr.catalog.get("mistral", model)
    worst = worst_case_usd(entry, ChatRequest(model, (Message.user(PROMPT),), max_tokens=256))
    assert worst is not None  # the simulated models are priced
    limit = 3.5 * worst
    await pr.ledger.set_budget(provider_scope(pid), daily_usd=limit)
    console.print(
        f"[bold]7. A budget holds under concurrency[/]: {pid} gets a daily limit of {usd(limit)}. "
        f"Six requests arrive at once; each first holds its worst case ({usd(worst)}) in one "
        "database transaction, and settles to its real cost when it ends."
    )
    # all six are in flight together: each holds its worst case before the first settles,
    # even on a busy machine (at 0.05 s, a test run beside a benchmark once saw none refused)
    fleet[pid].script.latency_s = 0.25
    results = await asyncio.gather(
        *(pr.complete(PROMPT, provider=pid, max_tokens=256) for _ in range(6)),
        return_exceptions=True,
    )
    fleet[pid].script.latency_s = 0.0
    rows = []
    for i, r in enumerate(results, 1):
        if isinstance(r, BudgetExceeded):
            rows.append([str(i), "refused: BudgetExceeded (exit 3)", str(r)])
        elif isinstance(r, BaseException):
            raise r
        else:
            rows.append([str(i), "answered", usd(r.cost_usd)])
    _show(console, None, ["request", "outcome", "cost / reason"], rows)
    report = await pr.usage(by="provider")
    _show(
        console,
        "8. The usage ledger: one row per attempt, failures included",
        ["provider", "requests", "failed", "tokens in/out", "cost"],
        [
            [
                r.key,
                str(r.requests),
                str(r.failed),
                f"{r.prompt_tokens}/{r.completion_tokens}",
                usd(r.cost_usd),
            ]
            for r in report.rows
        ],
    )


async def _fusion_scene(console: Any, pr: Any, fleet: Any) -> None:
    from polyroute.cli._fuse import member_table, summary

    panel = list(FUSION_PANEL)
    for pid, (reply, _) in FUSION_PANEL.items():
        fleet[pid].script.reply = reply
    console.print(
        f"[bold]9. Fusion[/]: {QUESTION!r} goes to {', '.join(panel)} at once. Answers are "
        'compared on their final answer ("The answer is 42." is 42), grouped by similarity, '
        "and every member's call is metered and recorded."
    )
    majority = await pr.fuse(QUESTION, providers=panel, method="majority", max_tokens=32)
    _show(console, None, *member_table(majority))
    console.print(f"   {summary(majority)}", highlight=False)
    weights = ", ".join(f"{pid} {w:g}" for pid, (_, w) in FUSION_PANEL.items())
    weighted = await pr.fuse(QUESTION, providers=panel, method="weighted", max_tokens=32)
    console.print(
        f"   weighted by fusion_weight ({weights}): google outweighs the other two together, "
        f"so {weighted.result!r} wins with confidence {weighted.confidence:.2f} "
        f"(agreement {weighted.agreement:.2f})\n",
        highlight=False,
    )
    rows = [
        [f.method, f.result, f"{f.agreement:.2f}", f"{f.confidence:.2f}", usd(f.total_cost_usd)]
        for f in (majority, weighted)
    ]
    _show(console, None, ["method", "result", "agreement", "confidence", "total cost"], rows)
    for pid in panel:
        fleet[pid].script.reply = None


async def _bench_scene(console: Any, fleet: Any, settings: dict[str, Any]) -> None:
    from polyroute.benchmark import load_suites, recommend, summarize
    from polyroute.benchmark._report import table as bench_table
    from polyroute.benchmark._runner import Bench
    from polyroute.client import Polyroute
    from polyroute.config import Config, validate
    from polyroute.testing import Profile, script_fleet

    suites = load_suites(["simple", "medium"])
    profiles = {
        "openai": Profile(latency_s=0.02, quality=0.8, seed=1),
        "anthropic": Profile(latency_s=0.06, quality=1.0, seed=2),
        "ollama": Profile(error_rate=0.25, quality=0.6, seed=3),
    }
    script_fleet(fleet, profiles, [c for s in suites for c in s.cases])
    pairs = [(pid, settings["providers"][pid]["default_model"]) for pid in profiles]
    console.print(
        "[bold]10. A benchmark[/] (polyroute bench): the built-in simple and medium suites, "
        "twice per pair, on simulators scripted to differ: ollama fast but flaky and weaker, "
        "anthropic slower and always right, openai in between. Every sample is a metered, "
        "streamed request; answers are graded."
    )
    # a fresh client: the breakers the earlier scenes tripped must not skew the measurement
    quiet = {**settings, "router": {"circuit_breaker": {"failure_threshold": 1000}}}
    config = Config(validate(quiet, "embedded demo config"), "embedded", fleet.env())
    try:
        async with Polyroute(config) as pr:
            engine = Bench(pr)
            info = await engine.start(suites, pairs, runs=2, concurrency=8)
            outcome = await engine.execute(info, suites)
            summaries = summarize(await engine.store.samples(info.id))
    finally:
        for pid in profiles:
            script = fleet[pid].script
            script.reply, script.latency_s, script.chunk_delay_s, script.error_rate = None, 0, 0, 0
    console.print(bench_table(outcome.run, summaries))
    for line in recommend(summaries):
        console.print(f"   • {line}", markup=False, highlight=False)
    console.print()


def _show(console: Any, title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    table(title, columns, rows, out=console)
    console.print()


async def _optimizer_scene(console: Any, fleet: Any, settings: dict[str, Any]) -> None:
    import math
    import time

    from polyroute.budgeting import analyze_ledger, propose
    from polyroute.client import Polyroute
    from polyroute.config import Config, validate
    from polyroute.ledger import UsageRecord

    # four weeks of simulated spend a day: (base, growth a day, weekly pattern, days failing)
    history = {
        "openai": (1.0, 0.03, False, 0),
        "anthropic": (1.5, 0.0, True, 0),
        "google": (0.6, 0.0, False, 0),
        "mistral": (0.8, 0.0, False, 2),
        "ollama": (0.0, 0.0, False, 0),
    }
    total, low, high = 150.0, 5.0, 70.0
    console.print(
        "[bold]11. The budget optimizer[/] (polyroute budget analyze / optimize): a fresh "
        "in-memory ledger gets four weeks of [italic]simulated[/] history (openai growing, "
        "anthropic busy on weekdays, google steady, mistral failing these two days, ollama "
        "free) and today's requests, sent now. Then a monthly "
        f"{usd(total, 2)} is shared by forecast need, {usd(low, 2)} to {usd(high, 2)} each."
    )
    config = Config(validate(settings, "embedded demo config"), "embedded", fleet.env())
    async with Polyroute(config) as pr:
        providers = config.enabled()
        for pid in providers:
            if pid != "mistral":
                await pr.complete(PROMPT, provider=pid, max_tokens=64)
        now = time.time()
        midnight = now - now % 86_400
        for pid, (base, growth, weekly, failing) in history.items():
            model = config.settings.providers[pid].default_model or ""
            for back in range(28, 0, -1):
                ts = midnight - back * 86_400 + 43_200
                if back <= failing:
                    pr.ledger.record(
                        UsageRecord(ts, pid, model, status="error", error_type="api_connection")
                    )
                    continue
                weekday = time.gmtime(ts).tm_wday
                season = (0.55 if weekday >= 5 else 1.2) if weekly else 1.0
                wiggle = 1 + 0.08 * math.sin(back * 2.1)
                cost = (base + growth * (28 - back)) * season * wiggle
                pr.ledger.record(UsageRecord(ts, pid, model, cost_usd=cost))
        analysis = await analyze_ledger(pr.ledger, providers, now)
        proposal = propose(analysis, total, low, high)
    forecasts = {p.provider: p.forecast_usd for p in analysis.providers}
    rows = [
        [
            a.provider,
            "-" if forecasts[a.provider] is None else usd(forecasts[a.provider], 2),
            usd(a.proposed_usd, 2),
            a.reason,
        ]
        for a in proposal.allocations
    ]
    _show(console, None, ["provider", f"forecast {analysis.period}", "proposed", "why"], rows)
