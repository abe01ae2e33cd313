"""What to forget: a memory whose retention has stayed below `forget.below` for
`forget.after_days` goes dormant, and so do the weakest of a tenant over
`forget.max_memories`. Pinned memories never go. Going dormant, coming back and the undo of
a forget run are recorded changes (ledger/dormancy.py); a read of a dormant memory is an access.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from reverie.config import ForgetSettings, MemorySettings
from reverie.ledger.dormancy import Dormancy
from reverie.ledger.runs import new_run_id
from reverie.ledger.usage import use_of
from reverie.lifecycle.retention import reinforced, retention, stability
from reverie.storage import PointId, Record
from reverie.storage import payload as p

log = structlog.get_logger("reverie.forget")

BATCH = 256  # memories put to sleep per hold of the merge lock


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
    return use.last + timedelta(days=stability(use, memory) * math.log(1.0 / below))


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
    """The `forget` job: a scan that decides, then batches that the dormancy records."""

    def __init__(self, dormancy: Dormancy, memory: MemorySettings, forget: ForgetSettings) -> None:
        self.dormancy, self.applier, self.run_log = dormancy, dormancy.applier, dormancy.run_log
        self.store, self.collection = dormancy.store, dormancy.collection
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
            self.dormancy.recover()
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
        details = {str(r.id): self._detail(r, due[r.id].reason, at) for r in records}
        dormant, kept = self.dormancy.put_to_sleep(records, details, report.run_id)
        report.kept_rewritten += kept
        for point_id in dormant:
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

    def revive(self, point_id: PointId) -> Record:
        """A dormant memory back as it was; reading it is an access."""

        def accessed(copy: Record) -> dict[str, Any]:
            return reinforced(use_of(copy.payload), 1, p.utcnow(), self.memory).as_payload()

        return self.dormancy.revive(point_id, accessed)
