"""``BudgetHints.noting()``: the refusals of a call that raises become hints, and the error
goes on unchanged; a call that succeeds or fails otherwise notes nothing."""

from __future__ import annotations

import pytest

from polyroute.errors import AllProvidersFailedError, BudgetExceeded, ProviderError
from polyroute.router.hints import BudgetHints


def refusal(scope: str) -> BudgetExceeded:
    return BudgetExceeded(
        scope=scope,
        period="daily",
        limit_usd=1.0,
        spent_usd=0.9,
        reserved_usd=0.0,
        requested_usd=0.2,
    )


def test_a_refusal_raised_is_noted_and_goes_on() -> None:
    hints = BudgetHints(clock=lambda: 0.0)
    exc = refusal("provider:a")
    with pytest.raises(BudgetExceeded) as info, hints.noting():
        raise exc
    assert info.value is exc
    assert set(hints.headroom()) == {"a"}


def test_the_refusals_of_a_run_that_failed_are_noted() -> None:
    hints = BudgetHints(clock=lambda: 0.0)
    failed = AllProvidersFailedError([], refusals=[refusal("global"), refusal("provider:b")])
    with pytest.raises(AllProvidersFailedError), hints.noting():
        raise failed
    assert set(hints.headroom()) == {"*", "b"}


def test_other_outcomes_note_nothing() -> None:
    hints = BudgetHints(clock=lambda: 0.0)
    with hints.noting():
        pass
    with pytest.raises(ProviderError), hints.noting():
        raise ProviderError("down")
    assert hints.headroom() == {}
