"""Logging: structlog events with stable snake_case names, JSON (or console on a TTY), redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from syncd.core.redact import redact_url

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Secrets reach logs through exception texts and URLs in fields: scrub every string.
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact_url(value)
    return event


def configure(fmt: str = "auto", level: str = "info", node_id: str | None = None) -> None:
    """Set up structlog for this process; called once by the CLI, never at import."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # APScheduler reports skipped runs (expected: cycles coalesce) as plain-text warnings that
    # would break the JSON log stream; syncd logs its own cycle events.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    structlog.contextvars.clear_contextvars()
    if node_id:
        structlog.contextvars.bind_contextvars(node=node_id)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
