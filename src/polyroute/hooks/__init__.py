"""Hooks: code of yours that every request runs through (``[hooks] enabled``).

A hook subclasses :class:`Hook` and overrides what it needs: ``pre_request`` may rewrite a
request or refuse it (``raise HookRefusal("why")``: the caller gets a 400 with the reason),
``post_response`` may inspect or rewrite an answer, ``stream_filter`` filters a streamed
answer's text, ``pre_embed`` an embeddings request. Each call has ``[hooks] timeout_s``;
a hook that raises or runs out of time fails the request (:class:`~polyroute.errors.HookError`,
a 500 at the gateway), which is never sent unhooked.

Built in: ``redact`` (:class:`RedactHook`). Others come from packages declaring a
``polyroute.hooks`` entry point (a :class:`Hook` class, made with its ``[hooks.NAME]``
table as keyword arguments).
"""

from polyroute.errors import HookError, HookRefusal
from polyroute.hooks._chain import BUILT_IN, HOOKS, Hooks, hooks_of
from polyroute.hooks._hook import Hook, HookContext, StreamFilter
from polyroute.hooks._redact import RedactHook, redact_text
from polyroute.hooks._wrap import HookedExecutor, HookedStream

__all__ = [
    "BUILT_IN",
    "HOOKS",
    "Hook",
    "HookContext",
    "HookError",
    "HookRefusal",
    "HookedExecutor",
    "HookedStream",
    "Hooks",
    "RedactHook",
    "StreamFilter",
    "hooks_of",
    "redact_text",
]
