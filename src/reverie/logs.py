"""structlog set-up: JSON lines for machines, a readable console on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from reverie.config import LoggingSettings


class _Current:
    """Writes to whatever sys.stdout/sys.stderr is at the time, not the one at configuration
    (pytest and the CLI tests swap them)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()

    def isatty(self) -> bool:
        return getattr(sys, self.name).isatty()


def configure_logging(settings: LoggingSettings, stream: object = None, to_stdout: bool = False) -> None:
    """Every event carries ISO time, level and any bound context (the run id of a run).
    The daemon logs to stdout (its only output); commands log to stderr, beside their results."""
    out = stream or _Current("stdout" if to_stdout else "stderr")
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
