"""Crash-safe apply, recovery and undo of merges.

The invariant: at no moment is a memory in neither the live collection nor the archive.
Apply, step by step, for a batch of merges at once (one store call per step; a crash
between any two leaves a state recovery can finish, merge by merge):
  1. write merged  the merged point, state `committing`: it is the intent record
                   recovery finds, so it goes first (DESIGN.md lists archive first; with
                   that order a crash mid-archive would leave archive copies nobody
                   finds again).
  2. archive       copy every member to the archive with `archived.merged_into`.
  3. verify        mark the members with the run (`_reverie.merging`), then re-read
                   them; one an agent changed or deleted meanwhile voids the merge: roll
                   it back, mark the other members fresh. Passing marks the merged point
                   `verified`, so recovery knows that members missing from then on were
                   deleted by step 4, not by an agent.
  4. delete        remove the members from the live collection, only those still marked:
                   a member an agent rewrote after the check (its write replaced the mark)
                   stays, and the next run releases the merge (release.py). Within one
                   process writes that name ids also wait for the merge lock (new ids
                   cannot be members); the mark covers agents writing to Qdrant
                   directly and other daemons.
  5. mark live     the merged point becomes `live`.
Recovery settles each in-flight merge with steps 2-5 and finishes each undo.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

import structlog

from reverie.storage import Filter, Match, PointId, Record, Store
from reverie.storage import payload as p
from reverie.storage.detection import CollectionLayout

log = structlog.get_logger("reverie.apply")

MERGING = f"{p.KEY}.merging"  # the run whose merge is taking the member (steps 3-4)


@dataclass
class Merge:
    """One merge as written: the merged point (state `committing`, its lineage in its
    payload) and the members it replaces. Consolidation decides it (planning.py)."""

    point: Record
    members: list[Record]


@dataclass
class Outcome:
    applied: bool
    changed: list[PointId] = field(default_factory=list)
    vanished: list[PointId] = field(default_factory=list)


class MergeApplier:
    def __init__(self, store: Store, collection: str, archive: str, layouts: CollectionLayout) -> None:
        self.store = store
        self.collection = collection
        self.archive = archive
        self.layouts = layouts
        # Held while merges are applied, recovered or undone, and by writes that name ids:
        # a memory rewritten between a merge's verify and its delete would be deleted.
        self.lock = threading.RLock()

    # -- apply --------------------------------------------------------------------------
    def apply(self, merges: list[Merge], run_id: str) -> list[Outcome]:
        """Apply merges together: each step is one store call for all of them (a round trip
        per step, not per merge), and every merge passes through the same states as alone."""
        with self.lock:
            self.store.upsert(self.collection, [merge.point for merge in merges])
            copies = [self._archived(m, merge.point, run_id) for merge in merges for m in merge.members]
            self.store.upsert(self.archive, copies)
            return self._settle([merge.point for merge in merges], copies)

    def _archived(self, member: Record, merged: Record, run_id: str) -> Record:
        """The archive copy: the member as adopted (so undo restores a live original),
        plus where it went."""
        archived = {"merged_into": merged.id, "run_id": run_id, "at": p.now()}
        stamp = p.meta(member.payload)
        payload = p.with_meta(
            member.payload,
            merging=None,
            state=p.LIVE,
            kind=stamp.get("kind", p.ORIGINAL),
            weight=p.weight(member.payload),
            archived=archived,
        )
        return Record(member.id, member.vector, payload, member.others)

    def _settle(self, merged: list[Record], written: list[Record] | None = None) -> list[Outcome]:
        """Verify each merge, then roll the sound ones forward together (archive what is
        missing, mark verified, delete members, mark live) and the others back. `written`:
        the archive copies apply has just written (recovery reads them back instead)."""
        members = [i for record in merged for i in p.meta(record.payload)["merged_from"]]
        for run_id, marked in _members_by_run(merged).items():  # before the check: see step 4
            self.store.set_payload(self.collection, marked, {"merging": run_id}, key=p.KEY)
        live = {r.id: r for r in self.store.retrieve(self.collection, members)}
        copies = {
            r.id: r for r in (self.store.retrieve(self.archive, members) if written is None else written)
        }
        outcomes: list[Outcome] = []
        forward: list[Record] = []
        unarchived: list[Record] = []
        for record in merged:
            stamp = p.meta(record.payload)
            ids: list[PointId] = stamp["merged_from"]
            expected: dict[str, str] = stamp["member_fingerprints"]
            archived = {i: copies[i] for i in ids if i in copies and _merged_into(copies[i]) == record.id}
            changed = [i for i in ids if i in live and p.fingerprint(live[i]) != expected[str(i)]]
            verified = stamp.get("state") == p.VERIFIED
            vanished = [] if verified else [i for i in ids if i not in live]  # before verify: an agent's
            if changed or vanished:
                own = {i: live[i] for i in ids if i in live}  # not the other merges' members
                self._roll_back(record, ids, own, archived, restore_missing=verified)
                outcomes.append(Outcome(applied=False, changed=changed, vanished=vanished))
                continue
            outcomes.append(Outcome(applied=True))
            forward.append(record)
            unarchived += [self._archived(live[i], record, stamp["run_id"]) for i in ids if i not in archived]
        if forward:
            self.store.upsert(self.archive, unarchived)
            unverified = [r.id for r in forward if p.state(r.payload) != p.VERIFIED]
            self.store.set_payload(self.collection, unverified, {"state": p.VERIFIED}, key=p.KEY)
            for run_id, taken in _members_by_run(forward).items():
                gone = [i for i in taken if i in live]
                self.store.delete(self.collection, gone, only=Filter(must=(Match(MERGING, run_id),)))
            self.store.set_payload(self.collection, [r.id for r in forward], {"state": p.LIVE}, key=p.KEY)
        return outcomes

    def _archive_copies(self, ids: list[PointId], merged_id: PointId) -> dict[PointId, Record]:
        copies = self.store.retrieve(self.archive, ids)
        return {r.id: r for r in copies if _merged_into(r) == merged_id}

    def _roll_back(
        self,
        merged: Record,
        ids: list[PointId],
        live: dict[PointId, Record],
        archived: dict[PointId, Record],
        restore_missing: bool,
    ) -> None:
        """Void a merge in flight; its members go back to fresh, so the next run
        reconsiders them. Missing members come back only when this merge deleted them
        (`restore_missing`, once verified): before that, only an agent deletes, and its
        delete stands. The merged point goes last, so a crash here is recovered again."""
        self.store.set_payload(self.collection, list(live), {"state": p.FRESH, "merging": None}, key=p.KEY)
        fresh = {"state": p.FRESH}
        if restore_missing:
            gone = [archived[i] for i in ids if i not in live and i in archived]
            self.store.upsert(self.collection, [self._restored(r, **fresh) for r in gone])
        self.store.delete(self.archive, list(archived))
        self.store.delete(self.collection, [merged.id])

    @staticmethod
    def _restored(copy: Record, **stamp: str) -> Record:
        """A member back from the archive, with `stamp` applied (undo keeps it live)."""
        return Record(copy.id, copy.vector, p.with_meta(copy.payload, archived=None, **stamp), copy.others)

    # -- recovery -----------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Finish or roll back every merge and undo a crash left in flight."""
        with self.lock:
            return self._recover()

    def _recover(self) -> dict[str, int]:
        counts = {"rolled_forward": 0, "rolled_back": 0, "undo_finished": 0}
        flight = Filter(should=tuple(Match(f"{p.KEY}.state", s) for s in p.IN_FLIGHT))
        for record in list(self.store.scroll(self.collection, flight, with_vectors=True)):
            if p.state(record.payload) == p.UNDOING:
                self._finish_undo(record)
                counts["undo_finished"] += 1
                continue
            outcome = self._settle([record])[0]
            counts["rolled_forward" if outcome.applied else "rolled_back"] += 1
            log.info(
                "recovery.merge",
                merge_id=record.id,
                applied=outcome.applied,
                changed=outcome.changed,
                vanished=outcome.vanished,
            )
        return counts

    # -- undo ---------------------------------------------------------------------------
    def undo(self, merged: Record, restore_as: str | None = None) -> list[PointId]:
        """Restore a live merged point's members from the archive and remove it. The members
        come back as they were adopted (`live`), or in state `restore_as` (`fresh`: for the
        next run to merge again)."""
        mark = {"state": p.UNDOING} | ({"restore_as": restore_as} if restore_as else {})  # for recovery
        with self.lock:
            self.store.set_payload(self.collection, [merged.id], mark, key=p.KEY)
            return self._finish_undo(merged, restore_as)

    def _finish_undo(self, merged: Record, restore_as: str | None = None) -> list[PointId]:
        stamp = p.meta(merged.payload)
        ids: list[PointId] = stamp["merged_from"]
        restore_as = restore_as or stamp.get("restore_as")
        archived = self._archive_copies(ids, merged.id)
        # a member live already was restored before a crash, or rewritten since: it stands
        live = {r.id for r in self.store.retrieve(self.collection, list(archived), with_vectors=False)}
        restored = [
            self._restored(r, **({"state": restore_as} if restore_as else {}))
            for r in archived.values()
            if r.id not in live
        ]
        self.store.upsert(self.collection, restored)
        self.store.delete(self.archive, list(archived))
        self.store.delete(self.collection, [merged.id])
        return list(archived)


def _members_by_run(merged: list[Record]) -> dict[str, list[PointId]]:
    """The merged points' members by the run that made each (recovery settles merges of
    several runs at once)."""
    by_run: dict[str, list[PointId]] = defaultdict(list)
    for record in merged:
        stamp = p.meta(record.payload)
        by_run[stamp["run_id"]] += stamp["merged_from"]
    return by_run


def _merged_into(copy: Record) -> PointId | None:
    return p.meta(copy.payload).get("archived", {}).get("merged_into")
