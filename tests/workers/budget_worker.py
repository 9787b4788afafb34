"""One OS process of the shared-budget test: N concurrent requests, then a JSON tally.

Prints ``ready`` once imports and the ledger are warm, waits for a line on
stdin, fires its requests at once, prints ``{"admitted": a, "refused": r}``.
"""

from __future__ import annotations

import asyncio
import json
import sys

from polyroute.client import Polyroute
from polyroute.config import load
from polyroute.errors import BudgetExceeded


async def main(config_path: str, n: int, max_tokens: int) -> None:
    async with Polyroute(load(config_path)) as pr:
        await pr.ledger.run(lambda store: None)  # open the database before the start line
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = await asyncio.gather(
            *(pr.complete("spend", provider="openai", max_tokens=max_tokens) for _ in range(n)),
            return_exceptions=True,
        )
    others = [
        repr(r)
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, BudgetExceeded)
    ]
    print(
        json.dumps(
            {
                "admitted": sum(not isinstance(r, BaseException) for r in results),
                "refused": sum(isinstance(r, BudgetExceeded) for r in results),
                "other": others,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
