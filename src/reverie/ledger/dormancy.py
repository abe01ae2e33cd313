"""Dormancy that can be undone: a forgotten memory leaves the live collection (out of every
search, reverie's and the agent's own tool's) for the archive, with the reason and the run,
and comes back with `reverie revive ID`, a direct read, or `reverie undo RUN`. Which
memories go is lifecycle/forgetting.py's decision; this module records and undoes it.

Putting to sleep, per batch under the merge lock (the same rule as merges: at no moment is
a memory in neither collection):
  1. intent   the run log holds each point as `forgetting`;
  2. copy     the dormant copy goes into the archive;
  3. mark     the live point is marked with the run (`_reverie.forgetting`);
  4. delete   live points still marked are deleted (an agent's rewrite drops the mark, and
              the rewritten memory stays live: its dormant copy is voided).
Recovery settles every `forgetting` entry: live again -> the copy is voided; only the copy
left -> dormant.

Waking writes the live point first, then drops the copy; a dormant copy whose id is live
is void, and recovery drops it. A release (release.py) wakes what an agent deletes or
rewrites while it, or a merge above it, sleeps: a delete must reach a memory whatever its
state, and nothing may stay behind for revive or undo to restore.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from reverie.errors import InvalidInputError, NotFoundError
from reverie.ledger.apply import MergeApplier
from reverie.ledger.runs import RunLog
from reverie.storage import Filter, Match, PointId, Record, Store
from reverie.storage import payload as p

log = structlog.get_logger("reverie.dormancy")

FORGETTING = f"{p.KEY}.forgetting"  # the run taking the live point (steps 3-4)
BATCH = 256


def wake(
    store: Store,
    collection: str,
    archive: str,
    run_log: RunLog,
    copy: Record,
    why: str,
    use: dict[str, Any] | None = None,
) -> Record:
    """`copy` (a dormant archive copy, with its vector) live again in the state it had;
    `use`, when given, replaces its use record (a read is an access). The forget run that
    put it to sleep records `why` it woke (`revived`, `released`), so its undo skips it."""
    dormant = p.meta(copy.payload).get("dormant", {})
    payload = p.with_meta(copy.payload, state=dormant.get("was", p.LIVE), dormant=None)
    if use is not None:
        payload = p.with_meta(payload, use=use)
    record = Record(copy.id, copy.vector, payload, copy.others)
    store.upsert(collection, [record])
    store.delete(archive, [copy.id], only=p.DORMANT_ONLY)
    if dormant.get("run_id"):
        run_log.set_merge_status(dormant["run_id"], str(copy.id), why)
    log.info("dormant.woken", id=copy.id, run_id=dormant.get("run_id"), why=why)
    return record


class Dormancy:
    """Putting memories to sleep for a forget run, waking them, the undo of a forget run,
    and the recovery of all three."""

    def __init__(self, applier: MergeApplier, run_log: RunLog) -> None:
        self.applier, self.run_log = applier, run_log
        self.store, self.collection, self.archive = applier.store, applier.collection, applier.archive

    def put_to_sleep(
        self, records: list[Record], details: dict[str, dict[str, Any]], run_id: str
    ) -> tuple[list[PointId], list[PointId]]:
        """Steps 1-4 for one batch (the caller holds the merge lock); `details` by str(id)
        say why each goes. Returns the ids now dormant and those an agent rewrote meanwhile."""
        self.run_log.add_merges(run_id, [(i, "forgetting", d) for i, d in details.items()])
        copies = [self._dormant_copy(r, details[str(r.id)], run_id) for r in records]
        self.store.upsert(self.archive, copies)
        ids = [r.id for r in records]
        self.store.set_payload(self.collection, ids, {"forgetting": run_id}, key=p.KEY)
        self.store.delete(self.collection, ids, only=Filter(must=(Match(FORGETTING, run_id),)))
        still = {str(r.id) for r in self.store.retrieve(self.collection, ids, with_vectors=False)}
        kept = [i for i in ids if str(i) in still]
        if kept:  # rewritten by an agent meanwhile: the new version stays live
            self._void(kept, run_id)
        dormant = [i for i in ids if str(i) not in still]
        for point_id in dormant:
            self.run_log.set_merge_status(run_id, str(point_id), "dormant")
        return dormant, kept

    def _dormant_copy(self, record: Record, detail: dict[str, Any], run_id: str) -> Record:
        stamp = p.meta(record.payload)
        dormant = {
            "run_id": run_id,
            "at": p.now(),
            "reason": detail["reason"],
            "retention": detail["retention"],
            "was": stamp.get("state", p.FRESH),
        }
        payload = p.with_meta(record.payload, state=p.DORMANT, dormant=dormant, forgetting=None)
        return Record(record.id, record.vector, payload, record.others)

    def _void(self, ids: list[PointId], run_id: str) -> None:
        """The forget of these did not happen: drop their dormant copies and the mark."""
        live = self.store.retrieve(self.collection, ids, with_vectors=False)
        self.store.delete(self.archive, ids, only=p.DORMANT_ONLY)
        self.store.set_payload(self.collection, [r.id for r in live], {"forgetting": None}, key=p.KEY)
        for point_id in ids:
            self.run_log.set_merge_status(run_id, str(point_id), "void")

    # -- coming back --------------------------------------------------------------------
    def dormant(self, point_id: PointId) -> Record | None:
        found = self.store.retrieve(self.archive, [point_id]) if self._archive_exists() else []
        if found and p.state(found[0].payload) == p.DORMANT:
            return found[0]
        return None

    def revive(self, point_id: PointId, use: Callable[[Record], dict[str, Any]] | None = None) -> Record:
        """Back into the live collection as it was, then the dormant copy goes; `use`, when
        given, writes the copy's new use record (a read is an access; an undo is not)."""
        with self.applier.lock:
            copy = self.dormant(point_id)
            if copy is None:
                raise self._not_dormant(point_id)
            stores = self.store, self.collection, self.archive, self.run_log
            return wake(*stores, copy, "revived", use(copy) if use else None)

    def _not_dormant(self, point_id: PointId) -> Exception:
        if self.store.retrieve(self.collection, [point_id], with_vectors=False):
            return InvalidInputError(f"memory {point_id} is live, not dormant: nothing to revive")
        archived = (
            self.store.retrieve(self.archive, [point_id], with_vectors=False)
            if self._archive_exists()
            else []
        )
        if archived:
            into = p.meta(archived[0].payload).get("archived", {}).get("merged_into")
            return InvalidInputError(f"memory {point_id} is not dormant: it was merged into {into}")
        return NotFoundError(f"unknown memory id: {point_id!r}")

    def undo(self, run_id: str) -> list[PointId]:
        """Every memory a forget run made dormant and that is still dormant, back as it was."""
        revived = []
        for entry in self.run_log.merges(run_id):
            if entry.status == "dormant":
                revived.append(self.revive(entry.detail["id"]).id)
        return revived

    # -- recovery -----------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Settle forgets a crash interrupted and dormant copies a crashed revive left."""
        with self.applier.lock:
            interrupted = self.run_log.merges_in_status("forgetting")
            for entry in interrupted:
                point_id = entry.detail["id"]  # as stored: an int or a UUID string
                if self.store.retrieve(self.collection, [point_id], with_vectors=False):
                    self._void([point_id], entry.run_id)
                elif self.dormant(point_id) is not None:
                    self.run_log.set_merge_status(entry.run_id, entry.merge_id, "dormant")
                else:
                    self.run_log.set_merge_status(entry.run_id, entry.merge_id, "void")
            voided = self._drop_copies_of_live() if self._archive_exists() else 0
        return {"forgets_settled": len(interrupted), "dormant_copies_voided": voided}

    def _drop_copies_of_live(self) -> int:
        """Dormant copies whose memory is live (a revive crashed after its write) are void."""
        ids = [c.id for c in self.store.scroll(self.archive, p.DORMANT_ONLY, payload_keys=())]
        dropped = 0
        for start in range(0, len(ids), BATCH):
            live = self.store.retrieve(self.collection, ids[start : start + BATCH], with_vectors=False)
            if live:
                self.store.delete(self.archive, [r.id for r in live])
                dropped += len(live)
        return dropped

    def _archive_exists(self) -> bool:
        return self.store.collection_exists(self.archive)
