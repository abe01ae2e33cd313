"""Use remembered without a store write per search: accesses are counted in memory and
written in batches, at most one write per point per `memory.flush_accesses` seconds.

A crash loses at most the counts not yet written, never a memory: a flush writes only
reverie's own `use` object, and only on points that are still there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog

from reverie.config import MemorySettings
from reverie.ledger.usage import use_of
from reverie.lifecycle.retention import reinforced
from reverie.storage import PointId, Store
from reverie.storage import payload as p

log = structlog.get_logger("reverie.lifecycle")


@dataclass
class Pending:
    count: int
    last: datetime


FLUSH_BATCH = 64  # points written per hold of the merge lock


class AccessLog:
    """Accesses since the last flush, by point; thread-safe (the API's worker threads)."""

    def __init__(self, settings: MemorySettings) -> None:
        self.settings = settings
        self._pending: dict[PointId, Pending] = {}
        self._lock = threading.Lock()
        self._flushed_at = time.monotonic()
        self.flushed = 0  # accesses written since start (for /metrics and stats)

    def record(self, ids: Iterable[PointId], at: datetime | None = None) -> None:
        moment = at or p.utcnow()
        with self._lock:
            for point_id in ids:
                seen = self._pending.get(point_id)
                if seen is None:
                    self._pending[point_id] = Pending(1, moment)
                else:
                    seen.count, seen.last = seen.count + 1, max(seen.last, moment)

    @property
    def due(self) -> bool:
        return bool(self._pending) and time.monotonic() - self._flushed_at >= self.settings.flush_accesses

    def flush(self, store: Store, collection: str, lock: threading.Lock) -> int:
        """Write what is pending into the points' `use`; returns the points written. Under
        the merge lock, a batch at a time (a write that names an id waits for one batch,
        not for the whole flush): a point merged away meanwhile is not written back to
        life. Points gone (merged or deleted since) keep no access: their merged point's
        history was already summed from what was flushed before the merge."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._flushed_at = time.monotonic()
        if not pending or not store.collection_exists(collection):
            return 0
        ids, written = list(pending), 0
        for start in range(0, len(ids), FLUSH_BATCH):
            with lock:
                records = store.retrieve(collection, ids[start : start + FLUSH_BATCH], with_vectors=False)
                for record in records:
                    seen = pending[record.id] if record.id in pending else pending[str(record.id)]
                    use = reinforced(use_of(record.payload), seen.count, seen.last, self.settings)
                    store.set_payload(collection, [record.id], {"use": use.as_payload()}, key=p.KEY)
            written += len(records)
        accesses = sum(x.count for x in pending.values())
        self.flushed += accesses
        log.info("accesses.flushed", points=written, accesses=accesses, gone=len(pending) - written)
        return written
