"""Metrics, health and logs: what an operator's standard tools read to run coffre (docs/observability.md)."""
