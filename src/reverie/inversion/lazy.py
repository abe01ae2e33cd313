"""Lazy text for merged memories: inverted when read (or by a budgeted job), then cached.

A merged point starts with text pending. Reading it inverts its vector once and caches the
text under `_reverie.inversion` with the inverter id, the settings used, the fidelity and a
digest of the vector it was made from; a cache whose digest no longer matches the vector
is ignored, so a changed memory never shows stale text. A point merged again is a new
point with text pending: nothing was spent on the one it replaced unless someone read it.
Without an inverter, a merged point may show a label: the member text closest to its
centroid, read from the archive and marked as a label, never passed off as an inversion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import structlog

from reverie.config import InversionSettings
from reverie.consolidation.lineage import original_records
from reverie.errors import InverterError
from reverie.storage import Filter, Match, Record, Store
from reverie.storage import payload as p

if TYPE_CHECKING:  # torch: not for commands that never invert
    from reverie.inversion.inverter import Inverter

log = structlog.get_logger("reverie.inversion")

PENDING = "pending"
PENDING_FILTER = p.searchable_filter(
    Filter(must=(Match(f"{p.KEY}.kind", p.MERGED), Match(f"{p.KEY}.text_source", PENDING)))
)


@dataclass(frozen=True)
class MemoryText:
    """A memory's text and where it came from: the agent, an inversion, a label, or
    nothing yet (pending)."""

    text: str | None
    source: str
    fidelity: float | None = None
    inverter: str | None = None

    def shown(self) -> str:
        if self.source == "inversion":
            return f"{self.text}  [inverted, fidelity {self.fidelity:.2f}]"
        if self.source == "label":
            return f"{self.text}  [label: closest member text, cosine {self.fidelity:.2f}; not an inversion]"
        if self.source == PENDING:
            return "(text pending)"
        return self.text if self.text is not None else "(no text)"


def cached_text(record: Record, text_key: str) -> MemoryText:
    """What a memory shows without running a model."""
    own = record.payload.get(text_key)
    if isinstance(own, str):
        return MemoryText(own, "agent")
    stamp = p.meta(record.payload)
    if stamp.get("kind") != p.MERGED:
        return MemoryText(None, "none")
    cached = stamp.get("inversion")
    if (
        isinstance(cached, dict)
        and record.vector is not None
        and cached.get("vector") == p.vector_digest(record.vector)
    ):
        return MemoryText(cached["text"], "inversion", cached["fidelity"], cached["inverter"])
    return MemoryText(None, PENDING)


class LazyInversion:
    def __init__(
        self,
        store: Store,
        collection: str,
        archive: str,
        settings: InversionSettings,
        text_key: str,
        inverter: Callable[[], Inverter | None],
    ) -> None:
        self.store, self.collection, self.archive = store, collection, archive
        self.settings, self.text_key = settings, text_key
        self._inverter = inverter  # loads the model on first need
        self.stopping = threading.Event()  # a shutdown: the job ends after its current batch
        self.on_inverted: Callable[[int, float], None] = lambda points, seconds: None

    def text(self, record: Record) -> MemoryText:
        """The memory's text, inverting (and caching) a pending merged point when an
        inverter is configured, else its label when labels are on."""
        found = cached_text(record, self.text_key)
        if found.source != PENDING:
            return found
        inverter = self._inverter()
        if inverter is not None and record.vector is not None:
            if not _compatible(record, inverter):
                raise InverterError(
                    f"memory {record.id} was embedded with {_embedder(record)!r}; the configured "
                    f"inverter ({inverter.id}) inverts {inverter.embedder_id!r} embeddings"
                )
            return self._invert([record], inverter)[0]
        if self.settings.labels:
            return self.label(record) or found
        return found

    def label(self, record: Record) -> MemoryText | None:
        """The archived member text closest to the merged point's vector, if any member had text."""
        members = original_records(self.store, self.archive, record, with_vectors=True)
        texted = [
            m for m in members if isinstance(m.payload.get(self.text_key), str) and m.vector is not None
        ]
        if not texted or record.vector is None:
            return None
        vectors = np.stack([m.vector for m in texted]).astype(np.float64)  # type: ignore[misc]
        centre = np.asarray(record.vector, dtype=np.float64)
        cosines = vectors @ centre / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(centre))
        best = int(np.argmax(cosines))
        return MemoryText(texted[best].payload[self.text_key], "label", round(float(cosines[best]), 4))

    def invert_pending(self) -> dict[str, int]:
        """The scheduled job: pending merged points, oldest first, older than the settle
        time, within the per-tick count and seconds budget."""
        inverter = self._inverter()
        if inverter is None or not self.store.collection_exists(self.collection):
            return {"inverted": 0, "pending": 0}
        s = self.settings
        settled = datetime.now(UTC) - timedelta(seconds=s.settle_seconds)
        settled_before = settled.isoformat(timespec="milliseconds")  # as merged_at is written
        pending = list(self.store.scroll(self.collection, PENDING_FILTER, with_vectors=True))
        foreign = [r for r in pending if not _compatible(r, inverter)]
        if foreign:
            log.warning("inversion.foreign_embedder", points=len(foreign), inverter=inverter.id)
        ready = sorted(
            (
                r
                for r in pending
                if p.meta(r.payload).get("merged_at", "") <= settled_before and _compatible(r, inverter)
            ),
            key=lambda r: p.meta(r.payload).get("merged_at", ""),
        )
        deadline = time.monotonic() + s.tick_seconds
        done = 0
        for start in range(0, min(len(ready), s.per_tick), s.batch_size):
            if time.monotonic() >= deadline or self.stopping.is_set():
                break
            done += len(self._invert(ready[start : min(start + s.batch_size, s.per_tick)], inverter))
        log.info(
            "inversion.tick", inverted=done, pending=len(pending) - done, settling=len(pending) - len(ready)
        )
        return {"inverted": done, "pending": len(pending) - done}

    def _invert(self, records: list[Record], inverter: Inverter) -> list[MemoryText]:
        from reverie.inversion.inverter import invert

        started = time.perf_counter()
        results = invert(inverter, np.stack([r.vector for r in records]))  # type: ignore[misc]
        elapsed = time.perf_counter() - started
        self.on_inverted(len(records), elapsed)
        s = self.settings
        texts = []
        for record, result in zip(records, results, strict=True):
            cache = {
                "text": result.text,
                "fidelity": result.fidelity,
                "inverter": inverter.id,
                "steps": s.steps,
                "beam_width": s.beam_width,
                "vector": p.vector_digest(record.vector),  # type: ignore[arg-type]
                "at": p.now(),
            }
            # by filter: a point merged away meanwhile is skipped, not recreated
            self.store.set_payload(
                self.collection, [record.id], {"inversion": cache, "text_source": "inversion"}, key=p.KEY
            )
            texts.append(MemoryText(result.text, "inversion", result.fidelity, inverter.id))
        log.info("inversion.done", points=len(records), seconds=round(elapsed, 3), inverter=inverter.id)
        return texts


def _embedder(record: Record) -> str | None:
    return p.meta(record.payload).get("embedder")


def _compatible(record: Record, inverter: Inverter) -> bool:
    """Unknown (an agent's own vectors) counts as compatible: the operator configured
    the inverter for this collection's embedder."""
    return _embedder(record) in (None, inverter.embedder_id)
