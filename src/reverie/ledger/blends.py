"""A saved blend: a new memory beside its parents, on record as a run of kind `blend`, so
`reverie undo RUN` removes it (undo.py); its parents stay as they are."""

from __future__ import annotations

import structlog

from reverie.ledger.apply import MergeApplier
from reverie.ledger.runs import RunLog
from reverie.storage import Record
from reverie.storage import payload as p

log = structlog.get_logger("reverie.memory")


def save_blend(applier: MergeApplier, run_log: RunLog, record: Record) -> None:
    """Write `record` (its stamp names the run and the parents) and put it on record."""
    stamp = p.meta(record.payload)
    run_id, lineage = stamp["run_id"], stamp["blended_from"]
    run_log.start(run_id, "blend", applier.collection, p.now())
    with applier.lock:
        applier.store.upsert(applier.collection, [record])
    run_log.add_merge(run_id, str(record.id), "saved", {"blend_id": record.id, "parents": lineage})
    run_log.finish(run_id, "done", p.now(), {"blend_id": record.id, "parents": len(lineage)})
    log.info("blend.saved", blend_id=record.id, run_id=run_id, parents=len(lineage))
