"""Adoption: stamp points reverie has not seen yet, quarantine the invalid ones.

A point is fresh when it has no `_reverie` key (an agent wrote it with a plain Qdrant
client) or its state is `fresh` (written by reverie, or changed under a planned merge).
Invalid vectors (NaN, infinite, zero) are quarantined: never merged, never deleted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import structlog

from reverie.storage import PointId, Record, Store
from reverie.storage import payload as p

log = structlog.get_logger("reverie.adoption")


@dataclass
class Adoption:
    valid: list[Record] = field(default_factory=list)
    quarantined: list[tuple[PointId, str]] = field(default_factory=list)


def adopt_fresh(store: Store, collection: str, run_id: str, dry_run: bool) -> Adoption:
    result = Adoption()
    for record in store.scroll(collection, p.FRESH_FILTER, with_vectors=True):
        problem = p.vector_problem(record.vector)
        if problem:
            result.quarantined.append((record.id, problem))
        else:
            result.valid.append(record)
    if dry_run:
        return result
    for point_id, reason in result.quarantined:
        log.warning("adoption.quarantined", point_id=point_id, reason=reason)
        stamp = {"state": p.QUARANTINED, "reason": reason, "run_id": run_id, "at": p.now()}
        store.set_payload(collection, [point_id], stamp, key=p.KEY)
    # One set_payload per distinct stamp: almost every fresh point is an original of weight 1.
    batches: dict[tuple[str, float], list[PointId]] = defaultdict(list)
    for record in result.valid:
        stamp = p.meta(record.payload)
        batches[(stamp.get("kind", p.ORIGINAL), p.weight(record.payload))].append(record.id)
    adopted_at = p.now()
    for (kind, weight), ids in batches.items():
        stamp = {"state": p.LIVE, "kind": kind, "weight": weight, "adopted_at": adopted_at}
        store.set_payload(collection, ids, stamp, key=p.KEY)
    for record in result.valid:
        record.payload = p.with_meta(record.payload, state=p.LIVE)
    return result
