"""Forgetting that can be undone: a memory whose retention has stayed below `forget.below`
for `forget.after_days` goes dormant. It leaves the live collection (out of every search,
reverie's and the agent's own tool's) for the archive, with the reason and the run, and
comes back with `reverie revive ID`, a direct read, or `reverie undo RUN`.

Crash safety, per batch under the merge lock (the same rule as merges: at no moment is a
memory in neither collection):
  1. intent   the run log holds each point as `forgetting`;
  2. copy     the dormant copy goes into the archive;
  3. mark     the live point is marked with the run (`_reverie.forgetting`);
  4. delete   live points still marked are deleted (an agent's rewrite drops the mark, and
              the rewritten memory stays live: its dormant copy is voided).
Recovery settles every `forgetting` entry: live again -> the copy is voided; only the copy
left -> dormant. Revive writes the live point first, then drops the copy; a dormant copy
whose id is live is void, and recovery drops it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from reverie.config import ForgetSettings, MemorySettings
from reverie.consolidation.apply import MergeApplier
from reverie.consolidation.dormancy import DORMANT_ONLY, wake
from reverie.consolidation.runs import RunLog, new_run_id
from reverie.errors import InvalidInputError, NotFoundError
from reverie.lifecycle.retention import reinforced, retention, use_of
from reverie.storage import Filter, Match, PointId, Record
from reverie.storage import payload as p

log = structlog.get_logger("reverie.forget")

FORGETTING = f"{p.KEY}.forgetting"  # the run taking the live point (steps 3-4)
BATCH = 256


@dataclass
class ForgetReport:
    run_id: str
    dry_run: bool
    considered: int = 0
    dormant: list[dict[str, Any]] = field(default_factory=list)
    kept_rewritten: list[PointId] = field(default_factory=list)


def faded_since(payload: dict[str, Any], memory: MemorySettings, below: float) -> datetime | None:
    """When the memory's retention fell below `below`: exp(-dt/S) = below at dt = S ln(1/below).
    None when it never does (the floor is at or above it)."""
    if memory.floor >= below:
        return None
    use = use_of(payload)
    return use.last + timedelta(days=use.stability(memory) * math.log(1.0 / below))


@dataclass(frozen=True)
class Due:
    """Why a memory goes dormant, and its payload's stamp when the scan read it."""

    reason: str
    stamp: int


def _stamp(payload: dict[str, Any]) -> int:
    """Equal stamps, equal payloads (a read, a rewrite or a merge changes it). A payload
    handed back in another key order only waits for the next run."""
    return hash(repr(payload))


class Forgetter:
    """The `forget` job, `revive`, the undo of a forget run, and their recovery."""

    def __init__(
        self, applier: MergeApplier, run_log: RunLog, memory: MemorySettings, forget: ForgetSettings
    ) -> None:
        self.applier, self.run_log = applier, run_log
        self.store, self.collection, self.archive = applier.store, applier.collection, applier.archive
        self.memory, self.forget = memory, forget

    def due(self, at: datetime) -> dict[PointId, Due]:
        """Memory id -> why it goes dormant: faded below the threshold long enough, or the
        weakest of a tenant over `forget.max_memories`. Pinned memories never go."""
        layout = self.applier.layouts.get()
        after = timedelta(days=self.forget.after_days)
        faded = f"retention below {self.forget.below} for {self.forget.after_days} days"
        due: dict[PointId, Due] = {}
        tenants: dict[tuple[Any, ...], list[tuple[float, PointId, int]]] = defaultdict(list)
        for record in self.store.scroll(self.collection, p.searchable_filter()):
            tenant = tenants[layout.tenant(record.payload)]
            if layout.pinned(record.payload):
                tenant.append((math.inf, record.id, 0))  # counts toward the cap, never goes
                continue
            since = faded_since(record.payload, self.memory, self.forget.below)
            if since is not None and at - since >= after:
                due[record.id] = Due(faded, _stamp(record.payload))
            else:
                strength = retention(use_of(record.payload), at, self.memory)
                tenant.append((strength, record.id, _stamp(record.payload)))
        cap = self.forget.max_memories
        if cap is not None:
            for tenant, kept in tenants.items():
                weakest = sorted(kept, key=lambda item: item[0])[: max(0, len(kept) - cap)]
                for strength, point_id, stamp in weakest:
                    if strength != math.inf:
                        reason = f"the weakest of tenant {list(tenant)} over forget.max_memories = {cap}"
                        due[point_id] = Due(reason, stamp)
        return due

    def run(self, dry_run: bool = False, at: datetime | None = None) -> ForgetReport:
        """One forget run, on record in the run log like a consolidation (kind `forget`).
        The scan runs outside the merge lock (writes that name ids do not wait behind a
        million payloads); each batch takes the lock and forgets only the memories still
        as scanned: one rewritten, read or merged meanwhile is no longer faded."""
        moment = at or p.utcnow()
        report = ForgetReport(new_run_id(), dry_run)
        with structlog.contextvars.bound_contextvars(run_id=report.run_id):
            with self.applier.lock:
                self.recover()
            due = self.due(moment)
            report.considered = len(due)
            if not dry_run:
                self.run_log.start(report.run_id, "forget", self.collection, p.now())
                ids = list(due)
                for start in range(0, len(ids), BATCH):
                    with self.applier.lock:
                        # vectors only for those going: the scan read a million payloads, not vectors
                        records = self.store.retrieve(self.collection, ids[start : start + BATCH])
                        unchanged = [r for r in records if _stamp(r.payload) == due[r.id].stamp]
                        if unchanged:
                            self._forget(unchanged, due, report, moment)
                summary = {"dormant": len(report.dormant), "kept_rewritten": len(report.kept_rewritten)}
                self.run_log.finish(report.run_id, "done", p.now(), summary)
            log.info("forget.summary", dry_run=dry_run, due=len(due), dormant=len(report.dormant))
        return report

    def _forget(
        self, records: list[Record], due: dict[PointId, Due], report: ForgetReport, at: datetime
    ) -> None:
        run_id = report.run_id
        details = {str(r.id): self._detail(r, due[r.id].reason, at) for r in records}
        self.run_log.add_merges(run_id, [(i, "forgetting", d) for i, d in details.items()])
        copies = [self._dormant_copy(r, details[str(r.id)], run_id) for r in records]
        self.store.upsert(self.archive, copies)
        ids = [r.id for r in records]
        self.store.set_payload(self.collection, ids, {"forgetting": run_id}, key=p.KEY)
        self.store.delete(self.collection, ids, only=Filter(must=(Match(FORGETTING, run_id),)))
        still = {str(r.id) for r in self.store.retrieve(self.collection, ids, with_vectors=False)}
        if still:  # rewritten by an agent meanwhile: the new version stays live
            kept = [i for i in ids if str(i) in still]
            self._void(kept, run_id)
            report.kept_rewritten += kept
        for point_id in ids:
            if str(point_id) not in still:
                self.run_log.set_merge_status(run_id, str(point_id), "dormant")
                report.dormant.append(details[str(point_id)])
                log.info("forget.dormant", **details[str(point_id)])

    def _detail(self, record: Record, reason: str, at: datetime) -> dict[str, Any]:
        use = use_of(record.payload)
        return {
            "id": record.id,
            "reason": reason,
            "retention": round(retention(use, at, self.memory), 4),
            "last_access": use.last.isoformat(timespec="seconds"),
            "accesses": use.count,
        }

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
        self.store.delete(self.archive, ids, only=DORMANT_ONLY)
        self.store.set_payload(self.collection, [r.id for r in live], {"forgetting": None}, key=p.KEY)
        for point_id in ids:
            self.run_log.set_merge_status(run_id, str(point_id), "void")

    # -- coming back --------------------------------------------------------------------
    def dormant(self, point_id: PointId) -> Record | None:
        found = self.store.retrieve(self.archive, [point_id]) if self._archive_exists() else []
        if found and p.state(found[0].payload) == p.DORMANT:
            return found[0]
        return None

    def revive(self, point_id: PointId, access: bool = True) -> Record:
        """Back into the live collection as it was (a read counts as an access; an undo
        does not), then the dormant copy goes."""
        with self.applier.lock:
            copy = self.dormant(point_id)
            if copy is None:
                raise self._not_dormant(point_id)
            use = reinforced(use_of(copy.payload), 1, p.utcnow(), self.memory) if access else None
            stores = self.store, self.collection, self.archive, self.run_log
            return wake(*stores, copy, "revived", use.as_payload() if use else None)

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
                revived.append(self.revive(entry.detail["id"], access=False).id)
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
        ids = [c.id for c in self.store.scroll(self.archive, DORMANT_ONLY)]
        dropped = 0
        for start in range(0, len(ids), BATCH):
            live = self.store.retrieve(self.collection, ids[start : start + BATCH], with_vectors=False)
            if live:
                self.store.delete(self.archive, [r.id for r in live])
                dropped += len(live)
        return dropped

    def _archive_exists(self) -> bool:
        return self.store.collection_exists(self.archive)
