"""How many memories stand in each state, live and archived: what `stats` counts first."""

from __future__ import annotations

from reverie.storage import Filter, Match, Store
from reverie.storage import payload as p


def census(store: Store, collection: str, archive: str) -> dict[str, int]:
    """Live (searchable) and merged memories, archive copies, fresh (not yet adopted),
    quarantined and dormant ones; zeros for a collection not made yet."""
    counts = dict.fromkeys(("live", "merged", "archived", "fresh", "quarantined", "dormant"), 0)
    if not store.collection_exists(collection):
        return counts
    archived = store.count(archive) if store.collection_exists(archive) else 0
    state = f"{p.KEY}.state"
    return counts | {
        "live": store.count(collection, p.searchable_filter()),
        "merged": store.count(
            collection, p.searchable_filter(Filter(must=(Match(f"{p.KEY}.kind", p.MERGED),)))
        ),
        "archived": archived,
        "fresh": store.count(collection, p.FRESH_FILTER),
        "quarantined": store.count(collection, Filter(must=(Match(state, p.QUARANTINED),))),
        "dormant": store.count(archive, Filter(must=(Match(state, p.DORMANT),))) if archived else 0,
    }
