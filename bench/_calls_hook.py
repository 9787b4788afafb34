"""`polyroute` with a profile hook on the main thread that counts every Python and C call,
charged to the innermost stage (a labelled function, :data:`STAGES`) on the caller's stack.
SIGUSR1 starts counting, SIGUSR2 stops it and writes the counts, as JSON, to OUT.

Run: python bench/_calls_hook.py OUT <polyroute arguments>  (``served_calls.py`` starts it)
"""

from __future__ import annotations

import json
import runpy
import signal
import sys
from collections import Counter
from types import CodeType, FrameType
from typing import Any

# (the end of a file's path, a function's name): its stage. A call is charged to the
# innermost of these on its stack; one that is under none of them is "other".
STAGES = {
    ("polyroute/gateway/_http11.py", "data_received"): "the protocol: request in",
    ("polyroute/gateway/_http11.py", "run"): "the protocol: the request's task",
    ("polyroute/gateway/_http11.py", "send"): "the protocol: reply out",
    ("polyroute/gateway/_http11.py", "flush"): "the protocol: reply out",
    ("polyroute/gateway/_app.py", "__call__"): "gateway middleware",
    ("polyroute/gateway/_observe.py", "__call__"): "metrics, access line",
    ("starlette/responses.py", "__call__"): "the reply sent",
    ("polyroute/gateway/_chat.py", "handle"): "endpoint",
    ("polyroute/gateway/_chat.py", "read_body"): "body read",
    ("polyroute/gateway/_chat.py", "rendered"): "reply rendered",
    ("polyroute/gateway/_openai.py", "parse"): "request parsed",
    ("polyroute/gateway/_openai.py", "render"): "reply rendered",
    ("polyroute/gateway/_auth.py", "caller"): "key checked",
    ("polyroute/gateway/_select.py", "chat"): "model selected",
    ("polyroute/client.py", "send"): "Polyroute.send",
    ("polyroute/client.py", "context"): "routing context",
    ("polyroute/client.py", "_decide_for"): "decision",
    ("polyroute/router/_router.py", "decide"): "decision",
    ("polyroute/ledger/_meter.py", "held"): "reservation",
    ("polyroute/ledger/_meter.py", "complete"): "metered call",
    ("polyroute/ledger/_meter.py", "_write"): "record",
    ("polyroute/ledger/_ledger.py", "durable"): "record",
    ("polyroute/providers/_client.py", "complete"): "provider adapter",
    ("polyroute/providers/openai.py", "parse_chat"): "reply parsed",
    ("polyroute/providers/_http.py", "send_json"): "HTTP pool",
    ("polyroute/providers/_transport.py", "open"): "upstream transport",
}


class Counts:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._stage: dict[CodeType, str] = {}

    def stage_of(self, code: CodeType) -> str:
        stage = self._stage.get(code)
        if stage is None:
            path = code.co_filename.replace("\\", "/")
            stage = next(
                (
                    s
                    for (end, name), s in STAGES.items()
                    if name == code.co_name and path.endswith(end)
                ),
                "",
            )
            self._stage[code] = stage
        return stage

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" and event != "c_call":
            return
        f: FrameType | None = frame
        while f is not None:
            stage = self.stage_of(f.f_code)
            if stage:
                self.calls[stage] += 1
                return
            f = f.f_back
        self.calls["other"] += 1


def main() -> None:
    out = sys.argv[1]
    counts = Counts()

    def start(signum: int, frame: FrameType | None) -> None:
        counts.calls.clear()
        sys.setprofile(counts.hook)

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.setprofile(None)
        with open(out, "w") as f:
            json.dump(counts.calls, f)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["polyroute", *sys.argv[2:]]
    runpy.run_module("polyroute", run_name="__main__")


if __name__ == "__main__":
    main()
