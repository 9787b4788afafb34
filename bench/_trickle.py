"""An upstream that streams as vendors do: ``gateway.canned_stream()``'s events, each in
its own chunk of a chunked response, ``GAP_MS`` apart (so each is its own network read).

Run: python bench/_trickle.py PORT [GAP_MS] [CHUNKS]  (``served_instructions.py`` starts it)
"""

from __future__ import annotations

import asyncio
import sys

import gateway as g

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def serve(port: int, gap_s: float) -> None:
    events = [f"{e}\n\n".encode() for e in g.canned_stream().strip().split("\n\n")]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.partition(b":")[2])
                await reader.readexactly(length)
                writer.write(HEAD)
                for event in events:
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                    await asyncio.sleep(gap_s)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 3:
        g.CHUNKS = int(sys.argv[3])
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2] if len(sys.argv) > 2 else 2) / 1000))
