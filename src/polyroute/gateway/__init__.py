"""The gateway: polyroute as an OpenAI- and Anthropic-compatible HTTP server (DESIGN.md §9).

::

    from polyroute import Polyroute
    from polyroute.gateway import create_app

    app = create_app(Polyroute.from_config())   # any ASGI server; `polyroute serve` uses uvicorn

Endpoints: ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages``
(Anthropic), ``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``,
``GET /health/providers``, ``GET /router/state``, ``GET /usage``, ``GET /metrics``,
``GET /`` (the dashboard).
Each inbound API is a small translation module; the endpoint flow is shared.
"""

from polyroute.gateway._app import ADMIN_KEY_ENV, create_app
from polyroute.gateway._auth import KEY_CACHE_S
from polyroute.gateway._select import ALIASES

__all__ = ["ADMIN_KEY_ENV", "ALIASES", "KEY_CACHE_S", "create_app"]
