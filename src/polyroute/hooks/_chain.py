"""The enabled hooks, in order, each step bounded by ``[hooks] timeout_s``.

Built once per :class:`~polyroute.Polyroute` from ``[hooks] enabled``: a built-in name
(``redact``) or the name of a ``polyroute.hooks`` entry point, whose package is imported
then (never at ``import polyroute``). A hook that raises or runs out of time fails the
request with a :class:`~polyroute.errors.HookError` naming it; the request is never sent
unhooked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from polyroute._plugins import installed, load
from polyroute.config import Config
from polyroute.errors import ConfigError, HookError, HookRefusal, PluginError
from polyroute.hooks._hook import Hook, HookContext, StreamFilter
from polyroute.hooks._redact import RedactHook
from polyroute.types import ChatRequest, ChatResponse, EmbeddingRequest

__all__ = ["BUILT_IN", "HOOKS", "Hooks", "hooks_of"]

HOOKS = "polyroute.hooks"
BUILT_IN = ("redact",)

log = logging.getLogger("polyroute.hooks")
_T = TypeVar("_T")

Filters = Sequence[tuple[str, StreamFilter]]


class Hooks:
    """Named hooks run in order; each list holds only the hooks that define that step."""

    __slots__ = ("_embed", "_post", "_pre", "_streams", "hooks", "timeout_s")

    def __init__(self, hooks: Sequence[tuple[str, Hook]], timeout_s: float) -> None:
        self.hooks = tuple(hooks)
        self.timeout_s = timeout_s
        self._pre = tuple((n, h) for n, h in self.hooks if h.overrides("pre_request"))
        self._post = tuple((n, h) for n, h in self.hooks if h.overrides("post_response"))
        self._embed = tuple((n, h) for n, h in self.hooks if h.overrides("pre_embed"))
        self._streams = tuple((n, h) for n, h in self.hooks if h.overrides("stream_filter"))

    async def _step(self, name: str, step: str, call: Awaitable[_T]) -> _T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call
        except HookRefusal as exc:
            exc.hook = exc.hook or name
            raise
        except TimeoutError:
            raise HookError(name, f"{step} gave no answer within {self.timeout_s:g} s") from None
        except Exception as exc:  # third-party code: whatever it raises fails the request
            log.exception("hook %s failed in %s", name, step)
            raise HookError(name, f"{step} raised {type(exc).__name__}") from exc

    async def request(self, request: ChatRequest, ctx: HookContext) -> ChatRequest:
        for name, hook in self._pre:
            request = await self._step(name, "pre_request", hook.pre_request(request, ctx))
        return request

    async def response(self, response: ChatResponse, ctx: HookContext) -> ChatResponse:
        for name, hook in self._post:
            response = await self._step(name, "post_response", hook.post_response(response, ctx))
        return response

    async def embedding(self, request: EmbeddingRequest, ctx: HookContext) -> EmbeddingRequest:
        for name, hook in self._embed:
            request = await self._step(name, "pre_embed", hook.pre_embed(request, ctx))
        return request

    def filters(self, ctx: HookContext) -> Filters:
        """One stream's filters (empty: its text goes through untouched)."""
        out = []
        for name, hook in self._streams:
            f = hook.stream_filter(ctx)
            if f is not None:
                out.append((name, f))
        return out

    async def chunk(self, filters: Filters, text: str) -> str:
        for name, f in filters:
            if not text:
                break
            text = await self._step(name, "stream_filter", f.chunk(text))
        return text

    async def end(self, filters: Filters) -> str:
        """What the filters held back, flushed through the filters after each."""
        text = ""
        for name, f in filters:
            if text:
                text = await self._step(name, "stream_filter", f.chunk(text))
            text += await self._step(name, "stream_filter", f.end())
        return text


def hooks_of(config: Config) -> Hooks | None:
    """``[hooks] enabled`` as a chain, or ``None`` when none is enabled."""
    settings = config.settings.hooks
    if not settings.enabled:
        return None
    return Hooks([(n, _make(n, config)) for n in settings.enabled], settings.timeout_s)


def _make(name: str, config: Config) -> Hook:
    settings = config.settings.hooks
    if name == "redact":  # a built-in name wins over a plugin's
        return RedactHook(responses=settings.redact.responses)
    plugin = installed(HOOKS).get(name)
    if plugin is None:
        names = ", ".join(sorted(installed(HOOKS))) or "none"
        raise ConfigError(
            f"{config.source}: hooks.enabled: no hook named {name!r} "
            f"(built-in: {', '.join(BUILT_IN)}; installed: {names})"
        )
    factory = load(plugin)
    if not callable(factory):
        raise PluginError(f"plugin {plugin.where} = {plugin.value!r} is not a Hook class")
    try:
        hook = factory(**settings.options(name))
    except Exception as exc:  # third-party code, or options it does not take
        raise PluginError(
            f"plugin {plugin.where} cannot be made with [hooks.{name}] "
            f"{settings.options(name)}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(hook, Hook):
        raise PluginError(
            f"plugin {plugin.where} = {plugin.value!r} made a {type(hook).__name__}, "
            "not a polyroute.hooks.Hook"
        )
    return hook
