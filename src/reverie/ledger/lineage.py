"""A merged point's lineage: the original memories behind it.

A merged point names only its direct members (`merged_from`); a member that was itself a
merged point sits in the archive with its own `merged_from`, and so on down to the
originals. Each merge therefore writes only its own members. (Keeping the whole list of
originals on every merged point made a concept merged again and again rewrite its
lineage each time: storage grew with the square of its merges.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reverie.storage import PointId, Record, Store
from reverie.storage import payload as p

Lookup = Callable[[list[PointId]], dict[str, Record]]

# on a merged point whose originals archive.keep_days dropped (archive_retention.py)
DROPPED = "originals_dropped"


def members_of(record: Record) -> list[PointId]:
    """A merged point's direct members; none for an original."""
    stamp = p.meta(record.payload)
    return list(stamp.get("merged_from") or []) if stamp.get("kind") == p.MERGED else []


def dropped(record: Record) -> bool:
    """Its originals left the archive: it stands for them as a count (its weight)."""
    return bool(p.meta(record.payload).get(DROPPED))


def walk(record: Record, lookup: Lookup) -> list[Record | PointId]:
    """The originals under `record`, level by level (one lookup per level): the archive
    copy of each one found there, else its bare id (a member not archived yet). A merged
    point whose originals were dropped is where the walk stops: it stands for them."""
    if not members_of(record) or dropped(record):
        return [record]
    found: list[Record | PointId] = []
    frontier = members_of(record)
    while frontier:
        copies = lookup(frontier)
        below: list[PointId] = []
        for member in frontier:
            copy = copies.get(str(member))
            if copy is None:
                found.append(member)
            elif members_of(copy) and not dropped(copy):
                below += members_of(copy)
            else:
                found.append(copy)
        frontier = below
    return found


def original_records(store: Store, archive: str, record: Record, with_vectors: bool = False) -> list[Record]:
    """The archive copies of the originals under a merged point (itself, for an original)."""
    return [r for r in walk(record, _archive_lookup(store, archive, with_vectors)) if isinstance(r, Record)]


def original_ids(store: Store, archive: str, record: Record) -> list[PointId]:
    return _ids(walk(record, _archive_lookup(store, archive, with_vectors=False)))


def lineage_map(live: Iterable[Record], archived: Iterable[Record]) -> dict[str, list[PointId]]:
    """Live id -> the originals it stands for, from points already read (one pass over
    the archive instead of a store call per level per point)."""
    copies = {str(r.id): r for r in archived}

    def lookup(ids: list[PointId]) -> dict[str, Record]:
        return {str(i): copies[str(i)] for i in ids if str(i) in copies}

    return {str(r.id): _ids(walk(r, lookup)) for r in live}


def _archive_lookup(store: Store, archive: str, with_vectors: bool) -> Lookup:
    def lookup(ids: list[PointId]) -> dict[str, Record]:
        return {str(r.id): r for r in store.retrieve(archive, ids, with_vectors=with_vectors)}

    return lookup


def _ids(found: list[Record | PointId]) -> list[PointId]:
    return [r.id if isinstance(r, Record) else r for r in found]


def store_lineage_map(store: Store, collection: str, archive: str) -> dict[str, list[PointId]]:
    """`lineage_map` of every point a search may return (quarantine and merges in
    flight left out)."""
    archived = store.scroll(archive) if store.collection_exists(archive) else []
    return lineage_map(store.scroll(collection, p.searchable_filter()), archived)
