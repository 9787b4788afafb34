"""A gateway-like process killed mid-flight: records, waits for ``durable()``, then dies.

Arguments: the database URL, how many records to have written to the database first
(then flushed), and how many more to hand over only (answered, not yet written). Prints
``answered`` once every record's ``durable()`` has returned, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
import time

from polyroute.ledger import BudgetLimits, Ledger, UsageRecord, provider_scope


async def main(url: str, written: int, answered: int) -> None:
    # a timer that never fires: nothing reaches the database unless flushed
    ledger = Ledger(
        url, budgets={provider_scope("a"): BudgetLimits(daily_usd=100.0)}, flush_interval_s=3600
    )
    for i in range(written + answered):
        if i == written:
            await ledger.flush()
        held = await ledger.reserve(provider="a", model="m", amount_usd=0.5, ts=time.time())
        ledger.record(
            UsageRecord(ts=time.time(), provider="a", model="m", cost_usd=0.01, request_id=f"r{i}"),
            held,
        )
        await ledger.durable()
    print("answered", flush=True)
    await asyncio.sleep(3600)  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
