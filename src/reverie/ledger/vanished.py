"""Merged points the agent's own tool deleted: their originals are deleted too.

An agent that deletes a merged memory with its own Qdrant client (LangChain's `delete`,
mem0's `delete`, a plain client) means to delete what it stands for. reverie sees it as a
merge on record as applied whose point exists nowhere (not live, not archived under a
later merge, not dormant). The originals under it then leave the archive, so no undo and no
release can bring them back; the merge goes on record as `deleted`. Maintenance and
`reverie serve`'s start look for such merges; a release that meets one (a rewrite of
another member) deletes below it instead of restoring.

What reverie cannot see is a plain-client delete of an original already merged away: the
id is not live, so the delete changes nothing (docs/integrations.md says so, beside the
deletes that work: `DELETE /memories/{id}`, `reverie forget`, MCP `delete_memory`).
"""

from __future__ import annotations

import structlog

from reverie.ledger.apply import MergeApplier
from reverie.ledger.runs import RunLog
from reverie.storage import Filter, Match, PointId, Record, Store
from reverie.storage import payload as p
from reverie.storage.base import parse_point_id

log = structlog.get_logger("reverie.vanished")

MERGED_INTO = f"{p.KEY}.archived.merged_into"
LOOKUP_BATCH = 4096


def merged_ids(copies: list[Record]) -> list[str]:
    """The merged points among archive copies (layers), as the run log names merges."""
    return [str(copy.id) for copy in copies if p.meta(copy.payload).get("kind") == p.MERGED]


def copies_under(store: Store, archive: str, merge_id: PointId) -> list[Record]:
    """Every archive copy below a merged point, found by their `merged_into` pointers (the
    merged point itself may be gone)."""
    found: list[Record] = []
    frontier = [merge_id]
    while frontier:
        below = [
            copy
            for into in frontier
            for copy in store.scroll(archive, Filter(must=(Match(MERGED_INTO, into),)))
        ]
        found += below
        frontier = [copy.id for copy in below if p.meta(copy.payload).get("kind") == p.MERGED]
    return found


def delete_under(applier: MergeApplier, run_log: RunLog, merge_id: PointId) -> int:
    """The originals (and merged points between) under a vanished merged point, deleted;
    it and the merges between go on record as `deleted`."""
    below = copies_under(applier.store, applier.archive, merge_id)
    applier.store.delete(applier.archive, [copy.id for copy in below])
    run_log.mark_gone([str(merge_id), *merged_ids(below)], "deleted")
    log.info("vanished.originals_deleted", merge_id=merge_id, deleted=len(below))
    return len(below)


def honour_agent_deletes(applier: MergeApplier, run_log: RunLog) -> dict[str, int]:
    """Find merges on record as applied whose point exists nowhere and delete what they
    stood for; returns the merges and copies."""
    store = applier.store
    if not store.collection_exists(applier.archive):
        return {"merges": 0, "copies": 0}
    merges, copies = 0, 0
    with applier.lock:
        applied = run_log.merges_in_status("applied")
        for start in range(0, len(applied), LOOKUP_BATCH):
            batch = applied[start : start + LOOKUP_BATCH]
            ids = [parse_point_id(m.merge_id) for m in batch]
            places = (applier.collection, applier.archive)
            present = {str(r.id) for name in places for r in store.retrieve(name, ids, with_vectors=False)}
            for merge in batch:
                if merge.merge_id not in present:
                    copies += delete_under(applier, run_log, parse_point_id(merge.merge_id))
                    merges += 1
    if merges:
        log.info("vanished.honoured", merges=merges, copies=copies)
    return {"merges": merges, "copies": copies}
