"""The floor under a served chat call: `polyroute serve`'s server (uvicorn's process, our
guarded protocol, the same settings) and upstream transport, with an ASGI app that only
relays each request's body to the upstream and answers its reply. What `polyroute serve`
costs beyond this is polyroute's own work: the key, parsing, routing, the budget,
metering, the ledger, rendering, metrics and the access log.

Run: python bench/_floor.py PORT UPSTREAM_PORT  (``served_instructions.py`` starts it)
"""

from __future__ import annotations

import sys
from typing import Any

import httpx2

from polyroute.gateway._server import ServeConfig, listen, run
from polyroute.providers._transport import LeanTransport

JSON = [(b"content-type", b"application/json")]


def relay(upstream: int) -> Any:
    transport = LeanTransport()
    url = httpx2.URL(f"http://127.0.0.1:{upstream}/v1/chat/completions")
    headers = (("authorization", "Bearer sk-upstream"), ("content-type", "application/json"))
    timeouts = {"connect": 10.0, "read": 60.0, "write": 60.0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer = b"ok"
        if scope["method"] == "POST":
            reply = await transport.open("POST", url, headers, body, timeouts)
            answer = await reply.read()
        length = [(b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": JSON + length})
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    port, upstream = int(sys.argv[1]), int(sys.argv[2])
    config = ServeConfig(
        relay(upstream),
        read_timeout_s=30,
        max_connections=1000,
        workers=1,
        loop="auto",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    run(config, listen("127.0.0.1", port))


if __name__ == "__main__":
    main()
