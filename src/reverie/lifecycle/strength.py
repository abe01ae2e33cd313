"""The strength of live memories as `stats` and `/metrics` show it: a sample's retention
histogram, read at most once a STRENGTH_MAX_AGE (a scrape every few seconds must not read
20,000 payloads each time); `as_of` says when it was read."""

from __future__ import annotations

import itertools
import time
from typing import Any

from reverie.config import MemorySettings
from reverie.lifecycle.retention import strength_summary
from reverie.storage import Store
from reverie.storage import payload as p

STRENGTH_SAMPLE = 20_000  # live memories the summary reads
STRENGTH_MAX_AGE = 60.0  # seconds a summary is served before it is read again


class StrengthGauge:
    def __init__(self, store: Store, collection: str, settings: MemorySettings) -> None:
        self.store, self.collection, self.settings = store, collection, settings
        self._last: tuple[float, dict[str, Any]] | None = None  # (monotonic time, summary)

    def read(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= STRENGTH_MAX_AGE:
            live = self.store.scroll(self.collection, p.searchable_filter())
            sample = (r.payload for r in itertools.islice(live, STRENGTH_SAMPLE))
            summary = strength_summary(sample, p.utcnow(), self.settings) | {"as_of": p.now()}
            self._last = (now, summary)
        return self._last[1]
