"""Example polyroute hooks, installed through the ``polyroute.hooks`` entry point.

- ``example-suffix``: appends ``suffix`` (an option: ``[hooks.example-suffix] suffix``) to
  the last user message: a rewrite the upstream sees.
- ``example-blocklist``: refuses a request whose text contains one of ``words``.
- ``example-upper``: upper-cases answers, whole or streamed.
- ``example-slow``, ``example-crash``: a hook that hangs and one that raises (``step``:
  in ``pre_request``, or in a stream's filter at its second chunk), for the tests of how a
  failing hook fails the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from polyroute.errors import HookRefusal
from polyroute.hooks import Hook, HookContext, StreamFilter
from polyroute.types import ChatRequest, ChatResponse, Message

__all__ = ["BlocklistHook", "CrashHook", "SlowHook", "SuffixHook", "UpperHook"]


class SuffixHook(Hook):
    name = "example-suffix"

    def __init__(self, *, suffix: str = " (via a hook)") -> None:
        self.suffix = suffix

    async def pre_request(self, request: ChatRequest, ctx: HookContext) -> ChatRequest:
        messages = list(request.messages)
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].role == "user":
                messages[i] = Message.user(messages[i].text + self.suffix)
                break
        return replace(request, messages=messages)


class BlocklistHook(Hook):
    name = "example-blocklist"

    def __init__(self, *, words: Sequence[str] = ("forbidden",)) -> None:
        self.words = tuple(w.lower() for w in words)

    async def pre_request(self, request: ChatRequest, ctx: HookContext) -> ChatRequest:
        text = " ".join(m.text for m in request.messages).lower()
        for word in self.words:
            if word in text:
                raise HookRefusal(f"the request mentions {word!r}, which is not allowed here")
        return request


class _Upper:
    async def chunk(self, text: str) -> str:
        return text.upper()

    async def end(self) -> str:
        return ""


class UpperHook(Hook):
    name = "example-upper"

    async def post_response(self, response: ChatResponse, ctx: HookContext) -> ChatResponse:
        return replace(response, content=response.content.upper())

    def stream_filter(self, ctx: HookContext) -> StreamFilter | None:
        return _Upper()


class SlowHook(Hook):
    name = "example-slow"

    def __init__(self, *, seconds: float = 3600) -> None:
        self.seconds = seconds

    async def pre_request(self, request: ChatRequest, ctx: HookContext) -> ChatRequest:
        await asyncio.sleep(self.seconds)
        return request


class _CrashOnSecond:
    def __init__(self) -> None:
        self.seen = 0

    async def chunk(self, text: str) -> str:
        self.seen += 1
        if self.seen == 2:
            raise RuntimeError("the example filter crashed, as it was written to")
        return text

    async def end(self) -> str:
        return ""


class CrashHook(Hook):
    name = "example-crash"

    def __init__(self, *, step: Literal["pre_request", "stream"] = "pre_request") -> None:
        self.step = step

    async def pre_request(self, request: ChatRequest, ctx: HookContext) -> ChatRequest:
        if self.step == "pre_request":
            raise RuntimeError("the example hook crashed, as it was written to")
        return request

    def stream_filter(self, ctx: HookContext) -> StreamFilter | None:
        return _CrashOnSecond() if self.step == "stream" else None
