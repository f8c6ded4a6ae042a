"""Structured logging for every process (key=value for people, JSON for log collectors)."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(level: str = "INFO", service: str | None = None) -> None:
    """Log to stderr; ``TOMSTREAM_LOG_FORMAT=json`` gives one JSON object per line."""
    renderer: structlog.typing.Processor
    if os.environ.get("TOMSTREAM_LOG_FORMAT", "").lower() == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    # Libraries (faust, kafka clients) log through the standard library: keep their warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
