"""``polyroute demo``: an offline tour on simulated providers, nothing to configure."""

from __future__ import annotations

from typing import Any

import click

from polyroute.cli._common import common_options, run, table, usd
from polyroute.cli._common import console as make_console

PROMPT = "In one sentence: why use more than one LLM provider?"


@click.command()
@common_options
def demo() -> None:
    """An offline tour on simulated vendors (loopback only, no keys)."""

    async def main() -> int:
        from polyroute.client import Polyroute
        from polyroute.config import Config, validate
        from polyroute.errors import ProviderError
        from polyroute.testing import Fleet

        console = make_console()
        with Fleet() as fleet:
            console.print(
                f"[bold]polyroute demo[/] · {len(fleet.sims)} simulated vendors on loopback, "
                "speaking each vendor's real wire format\n"
            )
            # the demo's ledger is in memory: simulated spend never enters the user's records
            settings = fleet.settings(storage={"url": "sqlite://"})
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

                console.print(
                    "[bold]3. Failures become typed errors[/] (scripted on the simulators):"
                )
                scenes = [
                    ("anthropic", 529, "Anthropic overloaded"),
                    ("google", 429, "Gemini quota exhausted"),
                    ("openai", 401, "a revoked OpenAI key"),
                ]
                err_rows = []
                for pid, status, what in scenes:
                    fleet[pid].script.fail_next(1, status, retry_after=2 if status == 429 else None)
                    try:
                        await pr.complete(PROMPT, provider=pid)
                    except ProviderError as exc:
                        err_rows.append(
                            [
                                what,
                                type(exc).__name__,
                                str(exc.status),
                                exc.vendor_type or "-",
                                "yes" if exc.retryable else "no",
                                "-" if exc.retry_after is None else f"{exc.retry_after:g}s",
                            ]
                        )
                fleet["openai"].script.cut_stream(after_chunks=2)
                try:
                    async for _ in pr.stream(PROMPT, provider="openai"):
                        pass
                except ProviderError as exc:
                    err_rows.append(
                        [
                            "a stream cut mid-answer",
                            type(exc).__name__,
                            "-",
                            "-",
                            "yes" if exc.retryable else "no",
                            "-",
                        ]
                    )
                _show(
                    console,
                    None,
                    ["what happened", "error", "status", "vendor type", "retryable", "retry after"],
                    err_rows,
                )
                await _budget_scene(console, pr, fleet)
        console.print(
            "Next: [bold]polyroute models[/] for the catalog and prices; "
            "[bold]polyroute ask --help[/] to ask your own providers."
        )
        return 0

    run(main)


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
        f"[bold]4. A budget holds under concurrency[/]: {pid} gets a daily limit of {usd(limit)}. "
        f"Six requests arrive at once; each first holds its worst case ({usd(worst)}) in one "
        "database transaction, and settles to its real cost when it ends."
    )
    fleet[pid].script.latency_s = 0.05  # all six are in flight together
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
        "5. The usage ledger: one row per attempt, failures included",
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


def _show(console: Any, title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    table(title, columns, rows, out=console)
    console.print()
