"""What replicas of one deployment share, through Redis (``[storage] redis_url``)."""

from polyroute.shared._shared import SCHEMES, Handler, Shared

__all__ = ["SCHEMES", "Handler", "Shared"]
