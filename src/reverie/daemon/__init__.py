"""The long-running service: HTTP API over one store (scheduler and metrics to come)."""
