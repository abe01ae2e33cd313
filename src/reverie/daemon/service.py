"""What the API and the scheduler share: one Reverie and the one-at-a-time rule.

A consolidation or undo that would overlap another is refused at once (BusyError), never
queued: the scheduler logs and skips it, the API answers 409. Maintenance waits for its
turn instead: with a consolidation every few seconds, a skipped maintenance never ran.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import structlog

from reverie.consolidation.engine import RunReport
from reverie.daemon.metrics import Metrics
from reverie.errors import BusyError
from reverie.ledger.undo import UndoReport
from reverie.lifecycle.forgetting import ForgetReport
from reverie.memory import Reverie

log = structlog.get_logger("reverie.service")

MAINTENANCE_WAIT = 600.0  # seconds: consolidation runs take seconds, a long one minutes


class Service:
    def __init__(self, rv: Reverie) -> None:
        self.rv = rv
        self.metrics = Metrics()
        self._exclusive = threading.Lock()
        self._stopping = threading.Event()
        rv.inversion.on_inverted = self.metrics.observe_inversion

    @property
    def models(self) -> dict[str, str]:
        """Each model's state: "not loaded", "loading", "loaded" (the inverter with its id),
        "off", or "failed: why"."""
        states = {"embedder": self.rv.embedder.status}
        if self.rv.settings.inversion.model != "none":
            states["inverter"] = self.rv.inverter_status
        return states

    def load_models_in_background(self) -> threading.Thread:
        """Load the models off the start path, so the API is up within seconds; the
        readiness route shows each model's state meanwhile, and why one failed."""

        def load() -> None:
            for name, load_model in (("embedder", self.rv.embedder.load), ("inverter", self.rv.inverter)):
                if name not in self.models:
                    continue
                started = time.perf_counter()
                with contextlib.suppress(Exception):  # a failure of any type: its state says why
                    load_model()
                state = self.models[name]
                seconds = round(time.perf_counter() - started, 2)
                report = log.error if state.startswith("failed") else log.info
                report("models.state", model=name, state=state, seconds=seconds)

        thread = threading.Thread(target=load, name="model-loader", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """A shutdown began: a running consolidation stops before its next merge."""
        self._stopping.set()
        self.rv.consolidator.stopping.set()
        self.rv.inversion.stopping.set()

    def invert_pending(self) -> dict[str, int]:
        """The scheduled inversion tick. Not exclusive: it only adds text to merged points."""
        return self.rv.inversion.invert_pending()

    def wait_idle(self) -> None:
        """Block until no consolidation, undo or maintenance runs (before storage closes)."""
        with self._exclusive:
            pass

    def consolidate(self, **options: Any) -> RunReport:
        with self._turn():
            started = time.perf_counter()
            report = None
            try:
                report = self.rv.consolidate(**options)
            finally:
                self.metrics.observe_run(report, time.perf_counter() - started)
            return report

    def forget_faded(self, dry_run: bool = False) -> ForgetReport:
        """The forget job: faded memories go dormant, one run at a time like the others."""
        with self._turn():
            return self.rv.forget_faded(dry_run)

    def undo(self, target: str) -> UndoReport:
        with self._turn():
            return self.rv.undo(target)

    def maintain(self) -> None:
        """Upkeep: merged points an agent deleted take their originals along, history is
        pruned to its bounds (run log, archive), then storage (the embedded
        engine builds its index and compacts deleted points here). Waits for a running
        consolidation to finish."""
        with self._turn(wait=MAINTENANCE_WAIT):
            self.rv.honour_agent_deletes()
            self.rv.prune_history()
            if self.rv.exists:
                self.rv.store.optimize(self.rv.collection)
                self.rv.store.optimize(self.rv.archive)

    def _turn(self, wait: float = 0.0) -> _Turn:
        return _Turn(self._exclusive, wait, self._stopping)


class _Turn:
    """The exclusive turn: taken at once, or within `wait` seconds unless a shutdown begins."""

    def __init__(self, lock: threading.Lock, wait: float, stopping: threading.Event) -> None:
        self.lock = lock
        self.wait = wait
        self.stopping = stopping

    def __enter__(self) -> None:
        deadline = time.monotonic() + self.wait
        while not self.lock.acquire(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
            if self.stopping.is_set() or time.monotonic() >= deadline:
                raise BusyError("a consolidation, undo or maintenance is already running; try again later")

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
