"""``[budget.optimizer] auto = true``: the gateway re-applies the optimizer every
``interval_h``, off the request path.

Every worker runs the loop; the apply transaction itself elects one: it commits only if
no auto-adjust was recorded in the last 90 % of the interval (SQLite serialises write
transactions, so two workers cannot both pass the check), and the others skip that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from polyroute.errors import BudgetBoundsError, LedgerError

if TYPE_CHECKING:
    from polyroute.budgeting._model import Proposal
    from polyroute.config import OptimizerConfig
    from polyroute.ledger import Ledger

log = logging.getLogger("polyroute.budget")


class AutoOptimizer:
    """Re-runs ``budget optimize --apply`` with the config's bounds every ``interval_h``."""

    def __init__(
        self,
        ledger: Ledger,
        providers: Sequence[str],
        config: OptimizerConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.ledger = ledger
        self.providers = tuple(providers)
        self.config = config
        self.interval_s = config.interval_h * 3600
        self.clock = clock
        self.sleep = sleep
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Optimize now and every interval on the running loop (no-op if running)."""
        if not self.running:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._loop(), name="polyroute-budget-optimizer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> Proposal | None:
        """Analyze, propose and apply, unless another worker applied within the interval
        (then ``None``)."""
        from polyroute.budgeting._analyze import analyze_ledger
        from polyroute.budgeting._optimize import apply, propose

        now = self.clock()
        analysis = await analyze_ledger(self.ledger, self.providers, now)
        c = self.config
        proposal = propose(analysis, c.total_monthly_usd, c.min_usd, c.max_usd)
        applied = await apply(
            self.ledger, proposal, source="auto", now=now, not_before=now - 0.9 * self.interval_s
        )
        for a in applied.allocations if applied else ():
            if a.current_usd != a.proposed_usd:  # warning: money limits changed unattended
                log.warning(
                    "budget optimizer: %s monthly budget %s -> $%.2f (%s)",
                    a.provider,
                    "none" if a.current_usd is None else f"${a.current_usd:.2f}",
                    a.proposed_usd,
                    a.reason,
                )
        return applied

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except (LedgerError, BudgetBoundsError, ValueError) as exc:
                # the next round may succeed (a busy database, a provider count that changed)
                log.warning("budget optimizer: this round failed: %s", exc)
            await self.sleep(self.interval_s)
