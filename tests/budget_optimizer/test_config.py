"""``[budget.optimizer]``: DESIGN.md §4's keys, validated with a clear one-line error."""

from __future__ import annotations

from typing import Any

import pytest

from polyroute.config import validate
from polyroute.errors import ConfigError

PROVIDERS = {
    "a": {"type": "openai", "api_key": "env:A"},
    "b": {"type": "anthropic", "api_key": "env:B"},
}


def settings(optimizer: dict[str, Any], **budget: Any) -> dict[str, Any]:
    return {"budget": {**budget, "optimizer": optimizer}, "providers": PROVIDERS}


def test_the_keys_and_their_defaults() -> None:
    s = validate(settings({}, monthly_usd=500.0), "t.toml")
    assert s.budget is not None and s.budget.monthly_usd == 500.0
    opt = s.budget.optimizer
    assert (opt.auto, opt.interval_h, opt.total_monthly_usd, opt.min_usd, opt.max_usd) == (
        False,
        24,
        500.0,
        20.0,
        300.0,
    )
    opt = validate(
        settings(
            {"auto": True, "interval_h": 6, "total_monthly_usd": 100, "min_usd": 10, "max_usd": 90}
        ),
        "t.toml",
    ).budget.optimizer  # type: ignore[union-attr]
    assert opt.auto and opt.interval_h == 6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            settings({"min_usd": 50, "max_usd": 40}),
            "t.toml: budget.optimizer: min_usd (50) is over max_usd (40)",
        ),
        (
            settings({"total_monthly_usd": -1}),
            "t.toml: budget.optimizer.total_monthly_usd: Input should be greater than or equal to 0",
        ),
        (
            settings({"interval_h": 0}),
            "t.toml: budget.optimizer.interval_h: Input should be greater than 0",
        ),
        (settings({"every": 3}), "t.toml: budget.optimizer.every: unknown key"),
        (
            settings({"auto": True, "total_monthly_usd": 30, "min_usd": 20}),
            "t.toml: budget.optimizer: 2 providers between min_usd 20 and max_usd 300 cannot share total_monthly_usd 30",
        ),
        (
            settings({"auto": True, "total_monthly_usd": 1000, "max_usd": 300}),
            "t.toml: budget.optimizer: 2 providers between min_usd 20 and max_usd 300 cannot share total_monthly_usd 1000",
        ),
        (
            {"providers": {"a": {**PROVIDERS["a"], "budget": {"optimizer": {}}}}},
            "t.toml: providers.a.budget.optimizer: unknown key",
        ),
    ],
)
def test_bad_values_are_one_line_naming_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(data, "t.toml")
    assert str(err.value) == message


def test_infeasible_bounds_are_fine_while_auto_is_off() -> None:
    # the CLI checks them against its own flags; only the unattended gateway needs them now
    validate(settings({"total_monthly_usd": 30, "min_usd": 20}), "t.toml")
