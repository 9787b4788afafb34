"""``POST /v1/messages/count_tokens``: Anthropic's token counting, for any served model.

The body is ``/v1/messages``'s (``max_tokens`` optional); the key and the model
are checked as for ``/v1/messages``. The answer is ``{"input_tokens": N}``:

- exact where the request's upstream counts: a pin to an Anthropic-type
  provider, or a bare model one of them serves. Its own
  ``/v1/messages/count_tokens`` answers (``anthropic-beta`` forwarded); the call
  is free and not in the ledger. Pre-request hooks see it first, as any request.
- else estimated (:func:`polyroute.tokens.estimate_prompt_tokens`, the routing
  guess): other vendors, ``auto`` and ``fusion`` (no single upstream).

The header ``x-polyroute-token-count`` says which (``exact`` or ``estimated``);
an exact count also names its provider and model, as answers do.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from polyroute.errors import PolyrouteError
from polyroute.gateway._anthropic import AnthropicMessages, parse_count_tokens, with_betas
from polyroute.gateway._chat import JSON, header_text, problem_response, read_body
from polyroute.gateway._observe import note_of
from polyroute.gateway._problems import problem_of
from polyroute.gateway._wire import dumps
from polyroute.router.decision import Target
from polyroute.tokens import estimate_prompt_tokens

if TYPE_CHECKING:
    from polyroute.client import Polyroute
    from polyroute.gateway._auth import Auth
    from polyroute.gateway._select import Choice, Selector

COUNT_HEADER = "x-polyroute-token-count"


class CountTokens:
    """The endpoint of one gateway."""

    def __init__(self, polyroute: Polyroute, auth: Auth, selector: Selector, limit: int) -> None:
        self.pr = polyroute
        self.auth = auth
        self.selector = selector
        self.limit = limit
        self.fmt = AnthropicMessages()

    def counter(self, choice: Choice) -> Target | None:
        """The upstream that counts this request exactly, if any."""
        routing = choice.routing
        model = routing.get("model")
        if choice.fusion is not None or model is None:
            return None
        provider = routing.get("provider")
        if provider is not None:
            return Target(provider, model) if self._counts(provider) else None
        return next(
            (t for t in self.pr.router.pairs if t.model == model and self._counts(t.provider)),
            None,
        )

    def _counts(self, provider: str) -> bool:
        return self.pr.client(provider).protocol.counts_tokens

    async def handle(self, request: Request) -> Response:
        note = note_of(request.scope)
        try:
            caller = await self.auth.caller(request.headers)
            note.key = caller.key_id
            inbound = parse_count_tokens(await read_body(request, self.limit))
            inbound = with_betas(inbound, request.headers.getlist("anthropic-beta"))
            chat = inbound.request
            target = self.counter(self.selector.chat(chat, inbound.hints, caller))
            if target is not None:
                client = self.pr.client(target.provider)
                if self.pr.hooks is not None:  # what leaves to be counted is hooked too
                    from polyroute.hooks import HookContext

                    ctx = HookContext("count_tokens", virtual_key=caller.key_id)
                    chat = await self.pr.hooks.request(chat, ctx)
                tokens = await client.count_tokens(replace(chat, model=target.model))
        except PolyrouteError as exc:
            problem = problem_of(exc)
            return problem_response(self.fmt.error_body(problem), problem, note)
        if target is None:
            tokens = estimate_prompt_tokens(chat.messages, chat.tools)
            headers = {COUNT_HEADER: "estimated"}
        else:
            note.provider, note.model = target.provider, target.model
            headers = {
                COUNT_HEADER: "exact",
                "x-polyroute-provider": header_text(target.provider),
                "x-polyroute-model": header_text(target.model),
            }
        return Response(dumps({"input_tokens": tokens}), 200, headers, JSON)
