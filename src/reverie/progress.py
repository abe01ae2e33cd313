"""Progress of long work: a bar on a terminal; elsewhere (a log file, a pipe, CI) a plain
line on stderr and a `progress` event in the logs every so often, so a run of many
minutes always shows it is alive and how far it got."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

import structlog
from tqdm import tqdm

log = structlog.get_logger("reverie.progress")

T = TypeVar("T")
EVERY = 30.0  # seconds between progress lines off a terminal


def with_progress(
    items: Iterable[T], desc: str, unit: str, enabled: bool = True, every: float = EVERY
) -> Iterator[T]:
    """`items`, reporting how far the loop got (nothing when not `enabled`)."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, unit=unit)
        return
    total = len(items) if isinstance(items, Sized) else None
    started = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            _report(desc, unit, done, total, now - started)


def _report(desc: str, unit: str, done: int, total: int | None, seconds: float) -> None:
    of = f"/{total}" if total else ""
    left = f", about {seconds * (total - done) / done:.0f} s left" if total and done < total else ""
    print(f"{desc}: {done}{of} {unit}s, {seconds:.0f} s{left}", file=sys.stderr, flush=True)
    log.info("progress", task=desc, done=done, total=total, seconds=round(seconds, 1))
