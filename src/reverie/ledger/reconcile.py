"""Recovery after a crash: settle what was in flight, then bring the run log in line.

The run log puts a merge on record as `applying` (an undo as `undoing`) before the store
is touched, and a crash can fall anywhere after that. Once recovery has settled every
merge in flight, the store says how each ended: the merged point is live (applied,
undo not done) or gone (voided, or undone). Runs a dead process left `running` become
`interrupted`. Without this, `reverie undo RUN` would miss merges that recovery finished.
"""

from __future__ import annotations

import structlog

from reverie.ledger.apply import MergeApplier
from reverie.ledger.dormancy import Dormancy
from reverie.ledger.runs import RunLog
from reverie.storage import Store
from reverie.storage import payload as p

log = structlog.get_logger("reverie.consolidation")


def recover(applier: MergeApplier, dormancy: Dormancy, run_log: RunLog) -> dict[str, int]:
    """Settle whatever a crash left in flight (forgets first, while their runs still read
    `running`; then merges and undos), then reconcile. Called before any run starts, in the
    process that holds the storage, so no run of ours is in flight."""
    counts = dormancy.recover() | applier.recover()
    counts.update(reconcile(run_log, applier.store, applier.collection))
    if any(counts.values()):
        log.info("recovery.done", **counts)
    return counts


def reconcile(run_log: RunLog, store: Store, collection: str) -> dict[str, int]:
    applying = run_log.merges_in_status("applying")
    undoing = run_log.merges_in_status("undoing")
    ids = [m.merge_id for m in applying + undoing]
    found = store.retrieve(collection, ids, with_vectors=False)
    live = {str(r.id) for r in found if p.state(r.payload) == p.LIVE}
    present = {str(r.id) for r in found}  # a merged point brought back by a release is fresh
    for merge in applying:
        status = "applied" if merge.merge_id in live else "skipped"
        run_log.add_merge(merge.run_id, merge.merge_id, status, {**merge.detail, "settled_by": "recovery"})
    for merge in undoing:
        if merge.merge_id in present:  # the undo never reached the store
            run_log.set_merge_status(merge.run_id, merge.merge_id, "skipped")
        else:
            run_log.set_merge_status(str(merge.detail["from_run"]), merge.merge_id, "undone")
            run_log.set_merge_status(merge.run_id, merge.merge_id, "undone")
    interrupted = run_log.interrupt_running(p.now())
    return {"log_settled": len(applying) + len(undoing), "runs_interrupted": len(interrupted)}
