"""Bring merged-away memories back to the live collection, for an agent that rewrites or
deletes a memory reverie has already merged.

Without this, a rewrite of an archived memory would leave the old version inside a live
merged point (and a second, live copy beside it), and a delete could not reach it at all.
Every merge above the memory is undone, top down, each with the crash-safe undo of
apply.py; what comes back is `fresh`, so the next run merges again whatever still belongs
together, now with the new version or without the deleted one. The undone merges are on
record in a run of kind `release`, so a review shows why they went.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from reverie.errors import ConflictError
from reverie.ledger.apply import MergeApplier
from reverie.ledger.archive_retention import dropped_error
from reverie.ledger.dormancy import wake
from reverie.ledger.lineage import members_of
from reverie.ledger.runs import RunLog, new_run_id
from reverie.ledger.undo import undo_on_record
from reverie.ledger.vanished import delete_under
from reverie.storage import Filter, PointId, Record
from reverie.storage import payload as p

log = structlog.get_logger("reverie.release")

LOOKUP_BATCH = 4096


@dataclass
class Release:
    """What a release did: the merges it undid (in a run of its own, when any)."""

    reason: str
    ids: list[PointId]  # the ids asked for, live now; dissolving, the originals in their place
    run_id: str | None = None
    undone: list[str] = field(default_factory=list)


def release(
    applier: MergeApplier, run_log: RunLog, ids: list[PointId], reason: str, dissolve: bool = False
) -> Release:
    """Undo every merge above the archived `ids`, so each is live again; with `dissolve`,
    also every merge below the merged points among them, down to their originals. A merge
    in flight above one of them (another process applying it) is a ConflictError."""
    result = Release(reason, list(ids))
    with applier.lock:
        _wake_sleeping(applier, run_log, ids)
        merged = _merges_to_undo(applier, run_log, ids, dissolve)
        if not merged:
            return result
        result.run_id = new_run_id()
        run_log.start(result.run_id, "release", applier.collection, p.now())
        status = "failed"
        try:
            while merged:
                for point in merged:
                    undo_on_record(applier, run_log, result.run_id, point, _run_of(point), p.FRESH)
                    result.undone.append(str(point.id))
                if dissolve:  # dissolved points give way to their members, down to originals
                    gone = {str(m.id) for m in merged} & {str(i) for i in result.ids}
                    kept = [i for i in result.ids if str(i) not in gone]
                    result.ids = kept + [i for m in merged if str(m.id) in gone for i in members_of(m)]
                merged = _merges_to_undo(applier, run_log, result.ids, dissolve)
            status = "done"
        finally:
            summary = {"reason": reason, "undone": len(result.undone)}
            run_log.finish(result.run_id, status, p.now(), summary)
            log.info("release.done", run_id=result.run_id, status=status, **summary)
    return result


def release_rewritten(
    applier: MergeApplier,
    run_log: RunLog,
    fresh: Filter,
    owns: Callable[[Record], bool],
    owner_keys: tuple[str, ...],
    pace: Callable[[], None],
) -> Release | None:
    """Fresh points whose id is in the archive too: an agent rewrote a memory reverie had
    merged without asking reverie (a plain Qdrant client, another daemon). The new version
    stands (an undo never restores over a live point); the merges above the old one are
    undone so that it counts in them no more. A merge another process is applying right
    now: left for the next run. `fresh`: the filter that finds the fresh points;
    `owner_keys`: the payload paths `owns` reads (a bulk import leaves millions fresh, whose
    whole payloads would cost a conversion each); `pace` runs before each batch looked up."""
    store = applier.store
    scrolled = store.scroll(applier.collection, fresh, batch_size=LOOKUP_BATCH, payload_keys=owner_keys)
    fresh = (r.id for r in scrolled if owns(r))
    rewritten: list[PointId] = []
    while batch := list(itertools.islice(fresh, LOOKUP_BATCH)):
        rewritten += [r.id for r in store.retrieve(applier.archive, batch, with_vectors=False)]
        pace()  # the next batch's scroll and lookup
    if not rewritten:
        return None
    try:
        return release(applier, run_log, rewritten, "rewritten")
    except ConflictError as exc:
        log.warning("release.deferred", reason=str(exc))
        return None


def _merges_to_undo(
    applier: MergeApplier, run_log: RunLog, ids: list[PointId], dissolve: bool
) -> list[Record]:
    """The merged points to undo, in an order that undoes each only once it is live: the
    chain above each archived id, top first (also above one live already: rewritten by an
    agent that did not ask reverie); dissolving, the live merged points among `ids` too."""
    store = applier.store
    by_depth: dict[str, tuple[int, Record]] = {}
    if dissolve:
        live = store.retrieve(applier.collection, ids, with_vectors=False)
        # a merged point whose originals were dropped (archive.keep_days) goes as it is
        by_depth.update({str(r.id): (0, r) for r in live if members_of(r) and not dropped_error(r)})
    for copy in store.retrieve(applier.archive, ids, with_vectors=False):
        chain = _chain_above(applier, run_log, copy)
        if chain is None:  # the agent's tool deleted the merged point: its originals go too
            continue
        for depth, point in enumerate(chain):
            by_depth[str(point.id)] = (depth, point)
    for _, point in by_depth.values():
        if p.state(point.payload) in p.IN_FLIGHT:
            raise ConflictError(
                f"merge {point.id} is {p.state(point.payload)} (being applied or undone elsewhere); try again"
            )
    return [point for _, point in sorted(by_depth.values(), key=lambda item: item[0])]


def _wake_sleeping(applier: MergeApplier, run_log: RunLog, ids: list[PointId]) -> None:
    """Dormant memories among `ids`, and dormant merged points above archived ones, live
    again (not an access), so that what a release undoes or a delete removes is within
    reach and nothing is left asleep for revive or undo to bring back."""
    store = applier.store
    sleeping: dict[str, PointId] = {}
    for copy in store.retrieve(applier.archive, ids, with_vectors=False):
        top = _sleeping_top(applier, copy)
        if top is not None:
            sleeping[str(top.id)] = top.id
    for copy in store.retrieve(applier.archive, list(sleeping.values())):
        wake(store, applier.collection, applier.archive, run_log, copy, "released")


def _sleeping_top(applier: MergeApplier, copy: Record) -> Record | None:
    """The dormant copy at the top of an archive copy's chain (itself, or a merged point
    above it), or None when the top is live."""
    store = applier.store
    while p.state(copy.payload) != p.DORMANT:
        into = p.meta(copy.payload).get("archived", {}).get("merged_into")
        if into is None or store.retrieve(applier.collection, [into], with_vectors=False):
            return None
        above = store.retrieve(applier.archive, [into], with_vectors=False)
        if not above:
            return None  # the top vanished (an agent deleted it): _chain_above deletes below it
        copy = above[0]
    return copy


def _chain_above(applier: MergeApplier, run_log: RunLog, copy: Record) -> list[Record] | None:
    """The merged points above an archive copy, top (the live one) first: merged into,
    merged again into, and so on. None when the top exists nowhere: an agent's tool deleted
    it, and what it stood for is deleted now (vanished.py), never restored."""
    chain: list[Record] = []
    while True:
        into = p.meta(copy.payload).get("archived", {}).get("merged_into")
        live = applier.store.retrieve(applier.collection, [into], with_vectors=False)
        if live:
            return [live[0], *reversed(chain)]
        above = applier.store.retrieve(applier.archive, [into], with_vectors=False)
        if not above:
            delete_under(applier, run_log, into)
            return None
        copy = above[0]
        chain.append(copy)


def _run_of(merged: Record) -> str:
    return str(p.meta(merged.payload).get("run_id"))
