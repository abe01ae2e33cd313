"""How many memories stand in each state, live and archived: what `stats` counts first."""

from __future__ import annotations

from reverie.storage import Condition, Filter, Match, Store
from reverie.storage import payload as p


def searchable_count(store: Store, name: str, *must: Condition) -> int:
    """Points a search may return (`p.searchable_filter`), among those matching `must`:
    all of them less the few in flight or quarantined. The engine counts both from its
    indexes; the `must_not` filter itself makes it read every point's state (16 ms at
    80,000 points, growing with the collection; a consolidation run counts twice)."""
    matching = store.count(name, Filter(must=must) if must else None)
    return matching - store.count(name, Filter(must=(p.UNSEARCHABLE_STATES, *must)))


def census(store: Store, collection: str, archive: str) -> dict[str, int]:
    """Live (searchable) and merged memories, archive copies, fresh (not yet adopted),
    quarantined and dormant ones; zeros for a collection not made yet."""
    counts = dict.fromkeys(("live", "merged", "archived", "fresh", "quarantined", "dormant"), 0)
    if not store.collection_exists(collection):
        return counts
    archived = store.count(archive) if store.collection_exists(archive) else 0
    state = f"{p.KEY}.state"
    return counts | {
        "live": searchable_count(store, collection),
        "merged": searchable_count(store, collection, Match(f"{p.KEY}.kind", p.MERGED)),
        "archived": archived,
        "fresh": store.count(collection, p.FRESH_FILTER),
        "quarantined": store.count(collection, Filter(must=(Match(state, p.QUARANTINED),))),
        "dormant": store.count(archive, p.DORMANT_ONLY) if archived else 0,
    }
