"""The long-running node process: scheduler, node lock, metrics and health endpoints."""
