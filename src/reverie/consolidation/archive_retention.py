"""A bounded archive: the originals of merges older than `archive.keep_days` are dropped.

The merged point stays and keeps its lineage as counts (`weight`, `merged_from`, and
`originals_dropped` saying how many went and when); what is lost is the undo, and an undo
past that point says so. Crash-safe in two steps per batch: the merged points are marked
first (from then on undo refuses), then their archive copies are deleted; a crash between
leaves copies that the next maintenance deletes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from reverie.consolidation.apply import MergeApplier
from reverie.consolidation.lineage import archived_below
from reverie.lifecycle.retention import parse_time
from reverie.storage import Filter, Match, Record
from reverie.storage import payload as p

log = structlog.get_logger("reverie.archive")

DROPPED = "originals_dropped"
BATCH = 256


def drop_old_originals(applier: MergeApplier, keep_days: float, at: datetime) -> dict[str, int]:
    """Drop the archived originals of live merged points merged before `at - keep_days`
    (and those a crash left behind a mark); returns the merged points and copies touched."""
    store, cutoff = applier.store, at - timedelta(days=keep_days)
    if not store.collection_exists(applier.archive):
        return {"merged": 0, "copies": 0}
    merged = Filter(must=(Match(f"{p.KEY}.kind", p.MERGED),))
    with applier.lock:
        due = [r for r in store.scroll(applier.collection, p.searchable_filter(merged)) if _due(r, cutoff)]
        copies = 0
        for start in range(0, len(due), BATCH):
            batch = due[start : start + BATCH]
            marks = {}
            for record in batch:
                mark = p.meta(record.payload).get(DROPPED) or {
                    "count": int(p.weight(record.payload)),
                    "at": p.now(),
                    "keep_days": keep_days,
                }
                marks[str(record.id)] = mark
                store.set_payload(applier.collection, [record.id], {DROPPED: mark}, key=p.KEY)
            below = [i for record in batch for i in archived_below(store, applier.archive, record)]
            store.delete(applier.archive, below)
            copies += len(below)
            for record in batch:
                done = {**marks[str(record.id)], "done": True}
                store.set_payload(applier.collection, [record.id], {DROPPED: done}, key=p.KEY)
    if copies:
        log.info("archive.originals_dropped", merged=len(due), copies=copies, keep_days=keep_days)
    return {"merged": len(due), "copies": copies}


def _due(record: Record, cutoff: datetime) -> bool:
    """Merged before the cutoff and not dropped yet, or dropping when a crash came."""
    stamp = p.meta(record.payload)
    if DROPPED in stamp:
        return not stamp[DROPPED].get("done")
    merged_at = parse_time(stamp.get("merged_at"))
    return merged_at is not None and merged_at < cutoff


def dropped_error(record: Record) -> str | None:
    """Why a merge can no longer be undone, or None when it can."""
    mark = p.meta(record.payload).get(DROPPED)
    if not mark:
        return None
    return (
        f"the {mark['count']} originals of merged memory {record.id} were dropped from the archive at "
        f"{mark['at']} (archive.keep_days = {mark['keep_days']}): it can no longer be undone, and its "
        "lineage is kept as counts"
    )
