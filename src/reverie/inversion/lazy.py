"""Lazy text for merged memories: inverted when read (or by a budgeted job), then cached.

A merged point is written with its label in the writer's text field: the original member
text closest to its vector, marked `text_source: label` (consolidation/labels.py), or with
no text when no member had any (`pending`). With an inverter configured, reading it
inverts its vector once: the text goes into the writer's text field (so the agent's own
tool reads it too) and under `_reverie.inversion` with the inverter id, the settings
used, the fidelity and a digest of the vector it was made from; a cache whose digest no
longer matches the vector is ignored, so a changed memory never shows stale text. A point
merged again is a new point: nothing was spent on the one it replaced unless someone read
it. A label is never passed off as an inversion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import structlog

from reverie.config import InversionSettings
from reverie.errors import InverterError
from reverie.ledger.lineage import original_records
from reverie.storage import Filter, IsEmpty, Match, MatchAny, QueryRequest, Record, Store
from reverie.storage import payload as p
from reverie.storage.detection import CollectionLayout
from reverie.storage.layouts import Layout, PayloadError
from reverie.storage.payload import FROM_MEMBERS, INVERSION, LABEL, PENDING

if TYPE_CHECKING:  # torch: not for commands that never invert
    from reverie.inversion.inverter import Inverter

log = structlog.get_logger("reverie.inversion")

CONTEXT = 3  # nearest stored texts that steer the inversion of a memory with no member texts


def _merged_with_text(*sources: str) -> Filter:
    return p.searchable_filter(
        Filter(must=(Match(f"{p.KEY}.kind", p.MERGED), MatchAny(f"{p.KEY}.text_source", sources)))
    )


PENDING_FILTER = _merged_with_text(PENDING)  # no text at all: no member had any
LABEL_FILTER = _merged_with_text(LABEL)  # a label: never inverted, or the search did not beat it
INVERTED_FILTER = _merged_with_text(INVERSION, FROM_MEMBERS)
UNINVERTED_FILTER = p.searchable_filter(  # what the invert job works on: never tried
    Filter(
        must=(
            Match(f"{p.KEY}.kind", p.MERGED),
            MatchAny(f"{p.KEY}.text_source", (PENDING, LABEL)),
            IsEmpty(f"{p.KEY}.inversion"),
        )
    )
)


def text_counts(store: Store, collection: str) -> dict[str, int]:
    """Merged memories by the text they show, and the invert job's backlog (for stats)."""
    if not store.collection_exists(collection):
        return dict.fromkeys(("pending_text", "labelled_text", "inverted_text", "text_backlog"), 0)
    return {
        "pending_text": store.count(collection, PENDING_FILTER),
        "labelled_text": store.count(collection, LABEL_FILTER),
        "inverted_text": store.count(collection, INVERTED_FILTER),
        "text_backlog": store.count(collection, UNINVERTED_FILTER),
    }


@dataclass(frozen=True)
class MemoryText:
    """A memory's text and where it came from: the agent, an inversion, a label, or
    nothing yet (pending)."""

    text: str | None
    source: str
    fidelity: float | None = None
    inverter: str | None = None
    note: str | None = None  # why a merged memory shows its label, not an inversion

    def shown(self) -> str:
        if self.source == INVERSION:
            return f"{self.text}  [inverted, fidelity {self.fidelity:.2f}]"
        if self.source == FROM_MEMBERS:
            return f"{self.text}  [inverted from its members, fidelity {self.fidelity:.2f}]"
        if self.source == LABEL:
            return f"{self.text}  [label: closest member text, cosine {self.fidelity:.2f}; not an inversion]"
        if self.source == PENDING:
            return "(text pending)"
        return self.text if self.text is not None else "(no text)"


def cached_text(record: Record, layout: Layout) -> MemoryText:
    """What a memory shows without running a model: the text in the writer's field, and
    where it came from (reverie's key says so for a merged point)."""
    text = layout.shown_text(record.payload)
    stamp = p.meta(record.payload)
    if stamp.get("kind") != p.MERGED:
        return MemoryText(text, p.AGENT_TEXT) if text is not None else MemoryText(None, "none")
    cached = stamp.get("inversion")
    if isinstance(cached, dict) and _made_for(cached, record):
        shown_as = cached.get("source", INVERSION)  # a label the search could not beat stays one
        return MemoryText(cached["text"], shown_as, cached["fidelity"], cached["inverter"])
    label = stamp.get("label")
    if text is not None and isinstance(label, dict):
        return MemoryText(text, LABEL, label.get("cosine"))
    return MemoryText(None, PENDING)


def _made_for(cached: dict[str, object], record: Record) -> bool:
    """Whether a cached text was made for this vector (a search hit comes without its
    vector: its cache stands, as the text field does)."""
    return record.vector is None or cached.get("vector") == p.vector_digest(record.vector)


class LazyInversion:
    def __init__(
        self,
        store: Store,
        collection: str,
        archive: str,
        settings: InversionSettings,
        layouts: CollectionLayout,
        inverter: Callable[[], Inverter | None],
        inverter_status: Callable[[], str] = lambda: "off",
    ) -> None:
        self.store, self.collection, self.archive = store, collection, archive
        self.settings, self.layouts = settings, layouts
        self._inverter = inverter  # loads the model on first need
        self._inverter_status = inverter_status  # why there is none: "off", "failed: why"
        self.stopping = threading.Event()  # a shutdown: the job ends after its current vector
        self.on_inverted: Callable[[int, float], None] = lambda points, seconds: None

    def text(self, record: Record) -> MemoryText:
        """The memory's text, inverting (and caching) a merged point's when an inverter is
        configured, else its label (for a point merged before labels were written, looked
        up in the archive)."""
        found = cached_text(record, self.layouts.get())
        if p.meta(record.payload).get("kind") != p.MERGED or found.inverter is not None:
            return found  # an agent's own text, or read already (a label the search kept stays one)
        inverter = self._inverter()
        if inverter is None:
            note = f"no inversion: the inverter is {self._inverter_status()}"
        elif record.vector is None:
            note = "no inversion: the memory has no vector in use"
        else:
            if _embedder(record) not in (None, inverter.embedder_id):
                raise InverterError(
                    f"memory {record.id} was embedded with {_embedder(record)!r}; the configured "
                    f"inverter ({inverter.id}) inverts {inverter.embedder_id!r} embeddings"
                )
            if _compatible(record, inverter):
                return self._invert([record], inverter)[0]
            note = (
                f"no inversion: its vector has {record.vector.size} dimensions, and the inverter "
                f"({inverter.id}) reads {inverter.embedder.dimension} ({inverter.embedder_id})"
            )
        if found.source == PENDING:
            found = self.label(record) or found
        return replace(found, note=note)

    def label(self, record: Record) -> MemoryText | None:
        """The archived member text closest to the merged point's vector, if any member had text."""
        layout = self.layouts.get()
        members = original_records(self.store, self.archive, record, with_vectors=True)
        texted = [
            (m, text) for m in members if (text := layout.shown_text(m.payload)) and m.vector is not None
        ]
        if not texted or record.vector is None:
            return None
        vectors = np.stack([m.vector for m, _ in texted]).astype(np.float64)  # type: ignore[misc]
        centre = np.asarray(record.vector, dtype=np.float64)
        cosines = vectors @ centre / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(centre))
        best = int(np.argmax(cosines))
        return MemoryText(texted[best][1], LABEL, round(float(cosines[best]), 4))

    def invert_pending(self) -> dict[str, int]:
        """The scheduled job: pending merged points, oldest first, older than the settle
        time, within the per-tick count and seconds budget."""
        inverter = self._inverter()
        if inverter is None or not self.store.collection_exists(self.collection):
            return {"inverted": 0, "pending": 0}
        s = self.settings
        settled = p.utcnow() - timedelta(seconds=s.settle_seconds)
        settled_before = settled.isoformat(timespec="milliseconds")  # as merged_at is written
        pending = list(self.store.scroll(self.collection, UNINVERTED_FILTER, with_vectors=True))
        foreign = [r for r in pending if not _compatible(r, inverter)]
        if foreign:
            log.warning(
                "inversion.foreign_embedder", points=len(foreign), inverter=inverter.id, note="labels stand"
            )
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
        batch = s.batch_size if inverter.batches else 1  # a shutdown waits for one batch at most
        for start in range(0, min(len(ready), s.per_tick), batch):
            if time.monotonic() >= deadline or self.stopping.is_set():
                break
            done += len(self._invert(ready[start : min(start + batch, s.per_tick)], inverter))
        log.info(
            "inversion.tick", inverted=done, pending=len(pending) - done, settling=len(pending) - len(ready)
        )
        return {"inverted": done, "pending": len(pending) - done}

    def _invert(self, records: list[Record], inverter: Inverter) -> list[MemoryText]:
        started = time.perf_counter()
        hypotheses, context = zip(*(self._starts(r) for r in records), strict=True)
        vectors = np.stack([r.vector for r in records])  # type: ignore[misc]
        results = inverter.invert(vectors, list(hypotheses), list(context))
        elapsed = time.perf_counter() - started
        self.on_inverted(len(records), elapsed)
        layout = self.layouts.get()
        texts = []
        for record, result in zip(records, results, strict=True):
            cache = {
                "text": result.text,
                "fidelity": result.fidelity,
                "source": result.source,
                "inverter": inverter.id,
                "vector": p.vector_digest(record.vector),  # type: ignore[arg-type]
                "at": p.now(),
            }
            # by filter: a point merged away meanwhile is skipped, not recreated. The writer's
            # text field first: its tool reads the new text too
            text_fields = layout.text_fields(record.payload, result.text)
            self.store.set_payload(self.collection, [record.id], text_fields)
            rewritten = p.fingerprint(replace(record, payload={**record.payload, **text_fields}))
            # what the text is: written for the vector, or a label the search could not beat
            stamp = {"inversion": cache, "text_source": result.source, "fingerprint": rewritten}
            self.store.set_payload(self.collection, [record.id], stamp, key=p.KEY)
            texts.append(MemoryText(result.text, result.source, result.fidelity, inverter.id))
        log.info("inversion.done", points=len(records), seconds=round(elapsed, 3), inverter=inverter.id)
        return texts

    def _starts(self, record: Record) -> tuple[list[str], list[str]]:
        """Where the search starts for a memory: its members' texts (a merged memory: they
        are candidates too, so the text shown is never further than its label), else the
        nearest texts the store holds in the same partition (another tenant's never)."""
        layout = self.layouts.get()
        members = original_records(self.store, self.archive, record)
        texts = [t for m in members if m.id != record.id and (t := layout.shown_text(m.payload))]
        if texts or record.vector is None:
            return texts, []
        try:
            tenant = p.partition_filter(layout.tenant(record.payload), layout.tenant_keys)
        except PayloadError:
            return [], []
        near = QueryRequest(record.vector, CONTEXT + 1, filter=p.searchable_filter(tenant))
        hits = self.store.query(self.collection, near)
        return [], [t for h in hits if h.id != record.id and (t := layout.shown_text(h.payload))][:CONTEXT]


def _embedder(record: Record) -> str | None:
    return p.meta(record.payload).get("embedder")


def _compatible(record: Record, inverter: Inverter) -> bool:
    """Unknown (an agent's own vectors) counts as compatible when its size fits: the
    operator configured the inverter for this collection's embedder."""
    if record.vector is not None and record.vector.size != inverter.embedder.dimension:
        return False
    return _embedder(record) in (None, inverter.embedder_id)
