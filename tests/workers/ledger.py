"""A process that holds budget and is then killed: reserves, prints ``held``, waits.

Arguments: the database URL, the lease's TTL in seconds, the amount to hold.
"""

from __future__ import annotations

import asyncio
import sys
import time

from polyroute.ledger import BudgetLimits, Ledger, provider_scope


async def main(url: str, lease_ttl_s: float, amount: float) -> None:
    budgets = {provider_scope("a"): BudgetLimits(daily_usd=1.0)}
    ledger = Ledger(url, budgets=budgets, lease_ttl_s=lease_ttl_s)
    await ledger.reserve(provider="a", model="m", amount_usd=amount, ts=time.time())
    print("held", flush=True)
    await asyncio.sleep(3600)  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
