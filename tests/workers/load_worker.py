"""A process under steady load, to be killed with SIGKILL by the crash test.

Four concurrent request loops against the configured provider, forever.
"""

from __future__ import annotations

import asyncio
import sys

from polyroute.client import Polyroute
from polyroute.config import load


async def main(config_path: str) -> None:
    async with Polyroute(load(config_path)) as pr:

        async def loop() -> None:
            while True:
                await pr.complete("load", provider="openai", max_tokens=5)

        print("started", flush=True)
        await asyncio.gather(*(loop() for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
