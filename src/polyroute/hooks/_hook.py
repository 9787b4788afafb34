"""What a hook is: a named object with up to four async steps, each optional."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from polyroute.types import ChatRequest, ChatResponse, EmbeddingRequest

__all__ = ["Hook", "HookContext", "StreamFilter"]


@dataclass(frozen=True, slots=True)
class HookContext:
    """What a hook knows of the request it sees."""

    kind: Literal["chat", "fusion", "embeddings", "count_tokens"]
    """``count_tokens``: the gateway's ``/v1/messages/count_tokens`` sends the request to an
    Anthropic upstream to be counted, not answered."""
    stream: bool = False
    virtual_key: str | None = None
    """The gateway key the request is billed to (``None``: a library call without one)."""


class StreamFilter(Protocol):
    """One stream's text, piece by piece: ``chunk`` returns what to pass on now (it may
    hold text back, e.g. a token that may continue in the next piece), ``end`` what is left."""

    async def chunk(self, text: str) -> str: ...

    async def end(self) -> str: ...


class Hook:
    """Subclass and override the steps you need; the ones left as they are never run.

    ``pre_request`` may return a rewritten request or raise
    :class:`~polyroute.errors.HookRefusal` (the caller gets a 400 with its reason).
    ``post_response`` sees a whole answer; ``stream_filter`` gives a filter for one
    streamed answer's text. ``pre_embed`` sees an embeddings request's inputs.
    """

    name: str = ""

    async def pre_request(self, request: ChatRequest, ctx: HookContext) -> ChatRequest:
        return request

    async def post_response(self, response: ChatResponse, ctx: HookContext) -> ChatResponse:
        return response

    def stream_filter(self, ctx: HookContext) -> StreamFilter | None:
        return None

    async def pre_embed(self, request: EmbeddingRequest, ctx: HookContext) -> EmbeddingRequest:
        return request

    def overrides(self, step: str) -> bool:
        """Whether this hook's class replaces :class:`Hook`'s ``step``."""
        return getattr(type(self), step) is not getattr(Hook, step)
