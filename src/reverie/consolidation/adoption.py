"""Adoption: validate points reverie has not consolidated yet; quarantine invalid ones.

A point is fresh when it has no `_reverie` key (an agent wrote it with a plain Qdrant
client) or its state is `fresh` (written by reverie, or changed under a planned merge).
Invalid vectors (NaN, infinite, zero, missing), payloads past the store's limits
(storage/limits.py: too deep, NaN, not UTF-8) and payloads the collection's layout cannot
read (a text path holding no string, an unparseable `_node_content`, a tenant path into a
non-object) are quarantined at once, with the reason: never merged, never deleted. Valid
fresh points stay fresh until the run that considered them has applied its merges
(`mark_adopted`), so a crash mid-run leaves them for the next run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import structlog

from reverie.storage import Filter, PointId, Record, Store
from reverie.storage import payload as p
from reverie.storage.layouts import Layout
from reverie.storage.limits import payload_problem

log = structlog.get_logger("reverie.adoption")


@dataclass
class Adoption:
    valid: list[Record] = field(default_factory=list)
    quarantined: list[tuple[PointId, str]] = field(default_factory=list)


def fresh_filter(store: Store, collection: str) -> Filter:
    """The filter that finds the fresh points now: the stamped ones alone (from the state
    index) unless some point carries no state (an agent's plain client wrote it), which
    is looked for once here instead of at every page of every scroll."""
    return p.FRESH_FILTER if store.count(collection, p.STATELESS) else p.STAMPED_FRESH


def find_fresh(
    store: Store,
    collection: str,
    fresh: Filter,
    run_id: str,
    dry_run: bool,
    owns: Callable[[Record], bool],
    layout: Layout,
    page: int,
    pace: Callable[[], None],
) -> Adoption:
    """Fresh points (found by `fresh`, see fresh_filter) this replica owns, split into
    valid and quarantined (stamped so unless a dry run). Another replica's points are its
    own to adopt. `page`: points a page of the scroll; each page resolves the filter again
    (10,000 fresh among 10M: 2.0 s in pages of 512, 0.6 s in pages of 2,048)."""
    scrolled = store.scroll(collection, fresh, with_vectors=True, batch_size=page)
    fresh = [r for r in scrolled if owns(r)]
    return adopt(store, collection, fresh, run_id, dry_run, layout, pace, page)


def adopt(
    store: Store,
    collection: str,
    fresh: list[Record],
    run_id: str,
    dry_run: bool,
    layout: Layout,
    pace: Callable[[], None],
    page: int,
) -> Adoption:
    """Split fresh points into valid and quarantined, stamping the quarantined (unless a
    dry run); a `page` of points at a time, with `pace` before each (150,000 fresh points
    took 1.6 s to check, while writes waited)."""
    result = Adoption()
    for start in range(0, len(fresh), page):
        pace()
        records = fresh[start : start + page]
        problems = _vector_problems(records, layout)
        for index, record in enumerate(records):
            problem = problems.get(index) or payload_problem(record.payload) or layout.problem(record.payload)
            if problem:
                result.quarantined.append((record.id, problem))
            else:
                result.valid.append(record)
    if not dry_run:
        for point_id, reason in result.quarantined:
            log.warning("adoption.quarantined", point_id=point_id, reason=reason)
            stamp = {"state": p.QUARANTINED, "reason": reason, "run_id": run_id, "at": p.now()}
            store.set_payload(collection, [point_id], stamp, key=p.KEY)
    return result


def _vector_problems(records: list[Record], layout: Layout) -> dict[int, str]:
    """Index -> why a record's vector cannot be merged, in one pass over those it has."""
    missing = f"no vector named {layout.vector!r}" if layout.vector else "no vector"
    problems = {i: missing for i, r in enumerate(records) if r.vector is None}
    present = [i for i in range(len(records)) if i not in problems]
    found = p.vector_problems([np.asarray(records[i].vector) for i in present])
    problems.update({present[k]: why for k, why in found.items()})
    return problems


Stamps = dict[tuple[str, float], list[PointId]]  # (kind, weight) -> ids


def adoption_stamps(records: Iterable[Record]) -> Stamps:
    """The valid fresh points by the stamp they get once adopted (almost always one:
    originals of weight 1); ids only, so a run need not hold the records to the end."""
    stamps: Stamps = defaultdict(list)
    for record in records:
        stamps[(p.meta(record.payload).get("kind", p.ORIGINAL), p.weight(record.payload))].append(record.id)
    return stamps


def mark_adopted(
    store: Store, collection: str, stamps: Stamps, skip: set[PointId], pace: Callable[[], None], page: int
) -> None:
    """Stamp the considered fresh points live (one write per distinct stamp and `page` of
    ids), but not those in `skip` (merged away, or set fresh again). `pace` runs between
    two writes: a run that adopted a burst of writes stamps them while more come in, and
    one write for all of them held the writers up for its whole length."""
    adopted_at = p.now()
    for (kind, weight), ids in stamps.items():
        kept = [i for i in ids if i not in skip]
        stamp = {"state": p.LIVE, "kind": kind, "weight": weight, "adopted_at": adopted_at}
        for start in range(0, len(kept), page):
            pace()
            store.set_payload(collection, kept[start : start + page], stamp, key=p.KEY)
