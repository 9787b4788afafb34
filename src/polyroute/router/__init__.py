"""Routing: decisions, strategies, fallback, circuit breakers."""
