"""The routing flags ``ask``, ``route`` and ``fuse`` share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from polyroute.client import Routing

F = TypeVar("F", bound=Callable[..., Any])

_CAPABILITIES = ("chat", "stream", "tools", "vision", "json", "embeddings")


def routing_options(f: F) -> F:
    """``--priority``, ``--complexity``, ``--provider``, ``--model``, ``--max-cost``,
    ``--max-latency-ms``, ``--require``: handed to the command as one ``routing`` argument."""
    options = [
        click.option(
            "--priority",
            type=click.Choice(["cost", "quality", "performance", "balanced", "carbon"]),
            help="Routing strategy (default: [router] strategy).",
        ),
        click.option(
            "--complexity",
            type=click.Choice(["simple", "medium", "complex", "auto"]),
            default="auto",
            show_default=True,
            help="How hard the request is; auto estimates it from the prompt.",
        ),
        click.option("--provider", metavar="ID", help="Only this configured provider."),
        click.option("--model", metavar="M", help="Only this model."),
        click.option(
            "--max-cost",
            type=click.FloatRange(min=0),
            metavar="USD",
            help="Skip candidates whose estimated cost is above this.",
        ),
        click.option(
            "--max-latency-ms",
            type=click.FloatRange(min=0),
            metavar="N",
            help="Skip candidates whose learned latency is above this.",
        ),
        click.option(
            "--require",
            type=click.Choice(_CAPABILITIES),
            multiple=True,
            help="A capability the model must have (repeatable).",
        ),
    ]

    @functools.wraps(f)
    def collect(
        *args: Any,
        priority: str | None,
        complexity: str,
        provider: str | None,
        model: str | None,
        max_cost: float | None,
        max_latency_ms: float | None,
        require: tuple[str, ...],
        **rest: Any,
    ) -> Any:
        given: dict[str, Any] = {
            "priority": priority or None,
            "provider": provider or None,
            "model": model or None,
            "max_cost_usd": max_cost,  # 0 is a real cap, so only None means unset
            "max_latency_ms": max_latency_ms,
            "require": tuple(require) or None,
        }
        routing = {"complexity": complexity} | {k: v for k, v in given.items() if v is not None}
        return f(*args, routing=cast("Routing", routing), **rest)

    command: Any = collect
    for option in reversed(options):
        command = option(command)
    return cast(F, command)
