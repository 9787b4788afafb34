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
            config = Config(
                validate(fleet.settings(), "embedded demo config"), "embedded", fleet.env()
            )
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
        console.print(
            "Next: [bold]polyroute models[/] for the catalog and prices; "
            "[bold]polyroute ask --help[/] to ask your own providers."
        )
        return 0

    run(main)


def _show(console: Any, title: str | None, columns: list[str], rows: list[list[str]]) -> None:
    table(title, columns, rows, out=console)
    console.print()
