"""A bounded archive: the originals of merges older than `archive.keep_days` are dropped.

A merged point whose merge is older than that (live, or archived under a later merge: a
concept merged again and again keeps its top merge young, and its old layers must go all
the same) keeps its lineage as counts (`weight`, `merged_from`, and `originals_dropped`
saying how many went and when) and loses its undo; an undo past it says so. The archive
then holds only what merges younger than `keep_days` replaced. Crash-safe in two steps per
batch: the merged points are marked first (from then on undo refuses), then the copies
below them are deleted; a crash between leaves copies that the next maintenance deletes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog

from reverie.config import ArchiveSettings, RunsSettings
from reverie.ledger.apply import MergeApplier
from reverie.ledger.lineage import DROPPED
from reverie.ledger.runs import RunLog
from reverie.ledger.usage import parse_time
from reverie.ledger.vanished import copies_under, merged_ids
from reverie.storage import Filter, Match, Record
from reverie.storage import payload as p

log = structlog.get_logger("reverie.archive")

BATCH = 256
MERGED = Filter(must=(Match(f"{p.KEY}.kind", p.MERGED),))


def drop_old_originals(
    applier: MergeApplier, run_log: RunLog, keep_days: float, at: datetime
) -> dict[str, int]:
    """Drop what the merges made before `at - keep_days` replaced, live merged points and
    archived ones alike (and what a crash left behind a mark); returns the merged points
    and copies touched."""
    store, cutoff = applier.store, at - timedelta(days=keep_days)
    if not store.collection_exists(applier.archive):
        return {"merged": 0, "copies": 0}
    merged, copies = 0, 0
    with applier.lock:
        for name in (applier.collection, applier.archive):
            due = [r for r in store.scroll(name, MERGED) if _due(r, cutoff)]
            for start in range(0, len(due), BATCH):
                copies += _drop_below(applier, run_log, name, due[start : start + BATCH], keep_days)
            merged += len(due)
    if copies:
        log.info("archive.originals_dropped", merged=merged, copies=copies, keep_days=keep_days)
    return {"merged": merged, "copies": copies}


def _drop_below(
    applier: MergeApplier, run_log: RunLog, name: str, batch: list[Record], keep_days: float
) -> int:
    """Mark each merged point of `batch` (in collection `name`), put the merged points
    among the copies below them on record as `dropped` (no longer "applied and there"),
    delete the copies, mark the batch done; returns the copies deleted."""
    store = applier.store
    marks = {}
    for record in batch:
        marks[str(record.id)] = p.meta(record.payload).get(DROPPED) or {
            "count": int(p.weight(record.payload)),
            "at": p.now(),
            "keep_days": keep_days,
        }
        store.set_payload(name, [record.id], {DROPPED: marks[str(record.id)]}, key=p.KEY)
    below = [copy for record in batch for copy in copies_under(store, applier.archive, record.id)]
    run_log.mark_gone(merged_ids(below), "dropped")
    store.delete(applier.archive, [copy.id for copy in below])
    for record in batch:  # one deleted just now as a layer of another is marked nowhere
        store.set_payload(name, [record.id], {DROPPED: {**marks[str(record.id)], "done": True}}, key=p.KEY)
    return len(below)


def _due(record: Record, cutoff: datetime) -> bool:
    """Merged before the cutoff and not dropped yet, or dropping when a crash came."""
    stamp = p.meta(record.payload)
    if DROPPED in stamp:
        return not stamp[DROPPED].get("done")
    merged_at = parse_time(stamp.get("merged_at"))
    return merged_at is not None and merged_at < cutoff


def prune_history(
    applier: MergeApplier, run_log: RunLog, runs: RunsSettings, archive: ArchiveSettings
) -> dict[str, Any]:
    """Bounded growth (maintenance runs it): the run log keeps `runs.keep_days` and at most
    `runs.keep_max` runs (less what undo, revive and recovery still need), and with
    `archive.keep_days` the originals of older merges leave the archive."""
    now = p.utcnow()
    cutoff = (now - timedelta(days=runs.keep_days)).isoformat(timespec="milliseconds")
    pruned: dict[str, Any] = {"run_log": run_log.prune(cutoff, runs.keep_max)}
    if archive.keep_days is not None and applier.store.collection_exists(applier.collection):
        pruned["archive"] = drop_old_originals(applier, run_log, archive.keep_days, now)
    log.info("history.pruned", **pruned)
    return pruned


def dropped_hint(archive: ArchiveSettings) -> str:
    """What a 404 for an id adds where `archive.keep_days` may have dropped it."""
    if archive.keep_days is None:
        return ""
    return (
        f" (or an original merged more than archive.keep_days = {archive.keep_days:g} ago: it left the "
        "archive, and the merged memory it went into stands for it; delete that one to remove its content)"
    )


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
