"""structlog set-up: JSON lines for machines, a readable console on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from reverie.config import LoggingSettings


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time, not the one at configuration."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(settings: LoggingSettings, stream: object = None) -> None:
    """Every event carries ISO time, level and any bound context (the run id of a run)."""
    out = stream or _CurrentStderr()
    use_json = settings.format == "json" or (
        settings.format == "auto" and not getattr(out, "isatty", lambda: False)()
    )
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
