"""polyroute-cohere: Cohere's v2 Chat API as a polyroute provider type (``cohere``),
a simulator of it for tests, and an example routing strategy (``frugal``).

Installed, it is found through its entry points; nothing in polyroute names it::

    [providers.cohere-1]
    type = "cohere"
    api_key = "env:COHERE_API_KEY"
    default_model = "command-a-03-2025"
"""

from __future__ import annotations

from polyroute_cohere._protocol import CATALOG, CohereProtocol, CohereStreamDecoder
from polyroute_cohere._strategy import FrugalStrategy

__all__ = ["CATALOG", "CohereProtocol", "CohereStreamDecoder", "FrugalStrategy"]
