"""Undo a whole run or one merge: originals back from the archive, merged point removed.

Every check runs before anything is written, so a refused undo changes nothing.
An undo is itself a run in the run log (kind `undo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from reverie.errors import InvalidInputError, NotFoundError
from reverie.ledger.apply import MergeApplier
from reverie.ledger.archive_retention import dropped_error
from reverie.ledger.dormancy import Dormancy
from reverie.ledger.runs import MergeRecord, RunLog, new_run_id
from reverie.storage import PointId, Record
from reverie.storage import payload as p
from reverie.storage.base import normalize_id

log = structlog.get_logger("reverie.undo")


@dataclass
class UndoReport:
    run_id: str
    target: str
    undone: list[dict[str, object]] = field(default_factory=list)


def undo(applier: MergeApplier, run_log: RunLog, target: str) -> UndoReport:
    blend = _blend_to_undo(run_log, target)
    if blend is not None:
        return _undo_blend(applier, run_log, target, blend)
    merges = _merges_to_undo(run_log, target)
    merged = [_check(applier, m) for m in merges]
    report = UndoReport(run_id=new_run_id(), target=target)
    with structlog.contextvars.bound_contextvars(run_id=report.run_id):
        run_log.start(report.run_id, "undo", applier.collection, p.now())
        for merge, point in zip(reversed(merges), reversed(merged), strict=True):
            report.undone.append(undo_on_record(applier, run_log, report.run_id, point, merge.run_id))
        summary = {"target": target, "undone": len(report.undone)}
        run_log.finish(report.run_id, "done", p.now(), summary)
        log.info("undo.summary", **summary)
    return report


def undo_forget(dormancy: Dormancy, run_id: str) -> UndoReport:
    """Every memory a forget run made dormant, and still dormant, back as it was (a run)."""
    if not any(entry.status == "dormant" for entry in dormancy.run_log.merges(run_id)):
        raise InvalidInputError(f"run {run_id} has no dormant memories left to bring back")
    report = UndoReport(run_id=new_run_id(), target=run_id)
    dormancy.run_log.start(report.run_id, "undo", dormancy.collection, p.now())
    revived = dormancy.undo(run_id)
    report.undone = [
        {"revived": point_id, "from_run": run_id, "restored": [point_id]} for point_id in revived
    ]
    dormancy.run_log.finish(report.run_id, "done", p.now(), {"target": run_id, "revived": len(revived)})
    return report


def undo_on_record(
    applier: MergeApplier,
    run_log: RunLog,
    run_id: str,
    merged: Record,
    from_run: str,
    restore_as: str | None = None,
) -> dict[str, object]:
    """Undo one live merge with the run log kept in step: on record as `undoing` before
    the store is touched (reconcile settles it after a crash), `undone` in the run that
    made it and in `run_id` after."""
    entry: dict[str, object] = {"merge_id": str(merged.id), "from_run": from_run}
    run_log.add_merge(run_id, str(merged.id), "undoing", entry)
    entry["restored"] = applier.undo(merged, restore_as)
    run_log.set_merge_status(from_run, str(merged.id), "undone")
    run_log.add_merge(run_id, str(merged.id), "undone", entry)
    log.info("undo.merge", **entry)
    return entry


def _blend_to_undo(run_log: RunLog, target: str) -> MergeRecord | None:
    """A saved blend (`reverie blend --save`), by its run or its id; None for a merge."""
    if target.startswith("r-"):
        run = run_log.get_run(target)
        return run_log.merges(target)[0] if run.kind == "blend" else None
    try:
        record = run_log.find_merge(str(normalize_id(target)))
    except (ValueError, NotFoundError):
        return None
    return record if run_log.get_run(record.run_id).kind == "blend" else None


def _undo_blend(applier: MergeApplier, run_log: RunLog, target: str, blend: MergeRecord) -> UndoReport:
    """A blend is a new point beside its parents: undoing it deletes it, nothing else."""
    if blend.status == "undone":
        raise InvalidInputError(f"blend {blend.merge_id} was already undone")
    report = UndoReport(run_id=new_run_id(), target=target)
    with structlog.contextvars.bound_contextvars(run_id=report.run_id), applier.lock:
        run_log.start(report.run_id, "undo", applier.collection, p.now())
        entry: dict[str, object] = {"merge_id": blend.merge_id, "from_run": blend.run_id, "restored": []}
        applier.store.delete(applier.collection, [blend.merge_id])
        run_log.set_merge_status(blend.run_id, blend.merge_id, "undone")
        run_log.add_merge(report.run_id, blend.merge_id, "undone", entry)
        report.undone.append(entry)
        run_log.finish(report.run_id, "done", p.now(), {"target": target, "undone": 1})
        log.info("undo.blend", blend_id=blend.merge_id)
    return report


def _merges_to_undo(run_log: RunLog, target: str) -> list[MergeRecord]:
    if target.startswith("r-"):
        run = run_log.get_run(target)
        if run.kind != "consolidate":
            raise InvalidInputError(
                f"run {target} is an {run.kind} run; only merges and blends can be undone"
            )
        merges = [m for m in run_log.merges(target) if m.status == "applied"]
        if not merges:
            raise InvalidInputError(f"run {target} has no applied merges left to undo")
        return merges
    try:
        merge_id = str(normalize_id(target))
    except ValueError:
        raise NotFoundError(f"unknown run or merge id: {target!r} (see `reverie runs`)") from None
    merge = run_log.find_merge(merge_id)
    if merge.status == "undone":
        raise InvalidInputError(f"merge {merge_id} was already undone")
    return [merge]


def _check(applier: MergeApplier, merge: MergeRecord) -> Record:
    """The live merged point, or an error saying why this merge cannot be undone now."""
    store = applier.store
    found = store.retrieve(applier.collection, [merge.merge_id])
    if not found:
        archived = store.retrieve(applier.archive, [merge.merge_id], with_vectors=False)
        if archived and p.state(archived[0].payload) == p.DORMANT:
            raise InvalidInputError(
                f"merged memory {merge.merge_id} is dormant (faded, forgotten by run "
                f"{p.meta(archived[0].payload)['dormant'].get('run_id')}): `reverie revive` it first"
            )
        if archived:
            into = p.meta(archived[0].payload).get("archived", {})
            raise InvalidInputError(
                f"merge {merge.merge_id} was merged again into {into.get('merged_into')} "
                f"by run {into.get('run_id')}: undo that first"
            )
        raise NotFoundError(f"merged point {merge.merge_id} no longer exists (deleted by an agent?)")
    point = found[0]
    dropped = dropped_error(point)
    if dropped:
        raise InvalidInputError(dropped)
    if p.state(point.payload) != p.LIVE:
        raise InvalidInputError(f"merge {merge.merge_id} is {p.state(point.payload)}, not live")
    made = p.meta(point.payload).get("fingerprint")
    if made is not None and made != p.fingerprint(point):
        raise InvalidInputError(
            f"merged memory {merge.merge_id} was rewritten since the merge (by an agent's own tool?): "
            "undoing would delete that rewrite; its originals stay in the archive"
        )
    member_ids: list[PointId] = p.meta(point.payload)["merged_from"]
    rewritten = [r.id for r in store.retrieve(applier.collection, member_ids, with_vectors=False)]
    if rewritten:
        raise InvalidInputError(
            f"cannot undo merge {merge.merge_id}: members {rewritten} were written again since; "
            "undoing would overwrite them"
        )
    return point
