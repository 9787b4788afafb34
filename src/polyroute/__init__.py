"""polyroute."""
