"""What the API and the scheduler share: one Reverie and the one-at-a-time rule.

A consolidation or undo that would overlap another is refused at once (BusyError), never
queued: the scheduler logs and skips it, the API answers 409.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from reverie.consolidation.engine import RunReport
from reverie.consolidation.undo import UndoReport
from reverie.daemon.metrics import Metrics
from reverie.errors import ReverieError
from reverie.memory import Reverie

log = structlog.get_logger("reverie.service")


class BusyError(ReverieError):
    """A consolidation or undo is already running."""


class Service:
    def __init__(self, rv: Reverie) -> None:
        self.rv = rv
        self.metrics = Metrics()
        self._exclusive = threading.Lock()

    def consolidate(self, **options: Any) -> RunReport:
        with self._turn():
            started = time.perf_counter()
            report = None
            try:
                report = self.rv.consolidate(**options)
            finally:
                self.metrics.observe_run(report, time.perf_counter() - started)
            return report

    def undo(self, target: str) -> UndoReport:
        with self._turn():
            return self.rv.undo(target)

    def maintain(self) -> None:
        """Storage upkeep after changes (the embedded engine builds its index here)."""
        with self._turn():
            if self.rv.exists:
                self.rv.store.optimize(self.rv.collection)
                self.rv.store.optimize(self.rv.archive)

    def _turn(self) -> _Turn:
        return _Turn(self._exclusive)


class _Turn:
    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            raise BusyError("a consolidation, undo or maintenance is already running; try again later")

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
