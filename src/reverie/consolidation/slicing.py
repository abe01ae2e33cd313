"""A full pass one slice of tenants at a time, so its memory follows the largest tenant.

Gathering every point of a collection into one matrix holds all its vectors at once (10M
memories: 15 GB of vectors plus their records), although no merge ever crosses a tenant.
So a full pass first counts the points of each tenant (a scroll of payloads, no vectors),
then gathers, plans and applies a few tenants at a time: whole tenants, up to
`consolidation.slice_points` points a slice, and a tenant larger than that alone. Peak
memory is then the largest slice plus what stays open, whatever the collection's size.

A collection without tenant keys (or declared single-tenant) is one slice. Points whose
tenant cannot be read are a slice of their own, picked by id: adoption quarantines them.

The counts come from the tenant key's index where that is exact (one key carries text
values, one per point): at 10M memories it took 19 s, against 169 s for a scroll of every
payload (304 s from a cold cache). Otherwise the payloads are read. A point the counts did
not see (a tenant value the index cannot tell apart, such as ["u1"] beside "u1") is
found by the slice whose filter it matched and gathered in a last slice, by id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from reverie.errors import StorageError
from reverie.ledger.census import searchable_count
from reverie.storage import Filter, HasId, IsEmpty, Match, MatchAny, PointId, Record, Store
from reverie.storage import payload as p
from reverie.storage.layouts import Layout, PayloadError, TenantValue

Tenant = tuple[TenantValue, ...]


@dataclass(frozen=True)
class Slice:
    """Points gathered together: those the store's `filter` matches whose tenant is among
    `tenants` (the filter matches text and integer tenants exactly, others broadly), or
    every point when `tenants` is None."""

    filter: Filter
    tenants: frozenset[Tenant] | None
    points: int  # as counted: the gathered matrix's first capacity

    def holds(self, layout: Layout, record: Record) -> bool:
        if self.tenants is None:
            return True
        try:
            return layout.tenant(record.payload) in self.tenants
        except PayloadError:  # the slice picked by id: adoption quarantines it
            return True


def whole_collection(points: int) -> Slice:
    return Slice(p.searchable_filter(), None, points)


@dataclass
class SlicePlan:
    """A full pass's slices, then the points none of them counted (`strays`, met in a
    slice's filter but not among its tenants), gathered last by id."""

    slices: list[Slice]
    counted: frozenset[Tenant]  # every tenant counted, this replica's or not
    counted_by: str  # "index" or "payloads"
    strays: set[PointId] = field(default_factory=set)

    def __iter__(self) -> Iterator[Slice]:
        yield from self.slices
        if self.strays:
            by_id = p.searchable_filter(Filter(must=(HasId(tuple(self.strays)),)))
            yield Slice(by_id, None, len(self.strays))

    def __len__(self) -> int:
        return len(self.slices) + bool(self.strays)

    def holds(self, piece: Slice, layout: Layout, record: Record) -> bool:
        """Whether `piece` gathers `record`; a record no slice counted is kept for the last."""
        if piece.holds(layout, record):
            return True
        if layout.tenant(record.payload) not in self.counted:
            self.strays.add(record.id)
        return False


def tenant_slices(
    store: Store, collection: str, layout: Layout, owns: Callable[[Tenant], bool], budget: int
) -> SlicePlan:
    """The searchable points this replica owns, counted by tenant, then cut into slices of
    whole tenants of up to `budget` points, largest tenants first."""
    counts = counted_from_index(store, collection, layout)
    counted_by, unreadable = "index", []
    if counts is None:
        counted_by, (counts, unreadable) = "payloads", counted_from_payloads(store, collection, layout)
    slices: list[Slice] = []
    chosen: list[Tenant] = []
    size = 0
    for tenant, count in counts.most_common():
        if not owns(tenant):
            continue
        if chosen and size + count > budget:
            slices.append(_slice(chosen, size, layout))
            chosen, size = [], 0
        chosen.append(tenant)
        size += count
    if chosen:
        slices.append(_slice(chosen, size, layout))
    if unreadable:
        by_id = p.searchable_filter(Filter(must=(HasId(tuple(unreadable)),)))
        slices.append(Slice(by_id, frozenset(), len(unreadable)))
    return SlicePlan(slices, frozenset(counts), counted_by)


def counted_from_index(store: Store, collection: str, layout: Layout) -> Counter[Tenant] | None:
    """Searchable points per tenant from the tenant key's index, or None where that count
    would not be exact: more than one key carries values, or some point holds no text
    value or several (an integer, a list). Counted as all less the unsearchable, as
    `searchable_count` does (a filter on state reads every point)."""
    total = searchable_count(store, collection)
    keys = layout.tenant_keys
    carried = [k for k in keys if searchable_count(store, collection, Filter(must_not=(IsEmpty(k),)))]
    if len(carried) != 1:
        return None
    key = carried[0]
    try:
        everywhere = store.facet(collection, key)
        unsearchable = store.facet(collection, key, Filter(must=(p.UNSEARCHABLE_STATES,)))
    except StorageError:  # no index on the key
        return None
    counts = {v: n - unsearchable.get(v, 0) for v, n in everywhere.items() if isinstance(v, str)}
    counts = {v: n for v, n in counts.items() if n > 0}
    # every point holds one of these values, and none is counted twice
    if sum(counts.values()) != total or not counts:
        return None
    if searchable_count(store, collection, MatchAny(key, tuple(counts))) != total:
        return None
    position = keys.index(key)
    return Counter(
        {tuple(("str", v) if i == position else None for i in range(len(keys))): n for v, n in counts.items()}
    )


def counted_from_payloads(
    store: Store, collection: str, layout: Layout
) -> tuple[Counter[Tenant], list[PointId]]:
    """Searchable points per tenant, read from every payload; and the points whose tenant
    cannot be read."""
    counts: Counter[Tenant] = Counter()
    unreadable: list[PointId] = []
    for record in store.scroll(collection, p.searchable_filter(), batch_size=2048):
        try:
            counts[layout.tenant(record.payload)] += 1
        except PayloadError:
            unreadable.append(record.id)
    return counts, unreadable


def _slice(tenants: list[Tenant], points: int, layout: Layout) -> Slice:
    """One condition per tenant key, not one filter per tenant (a scroll checks every
    point against its filter, and a slice may hold thousands of small tenants): the key's
    values matched at once where they are all text or all integers, otherwise left broad.
    The filter may then match a little more than the slice; `holds` keeps the slice exact."""
    conditions: list[Match | MatchAny | IsEmpty] = []
    for position, key in enumerate(layout.tenant_keys):
        values = {tenant[position] for tenant in tenants}
        kinds = {value[0] if value else None for value in values}
        if kinds == {None}:
            conditions.append(IsEmpty(key))
        elif kinds in ({"str"}, {"int"}):
            raw = sorted(value[1] for value in values if value)
            conditions.append(Match(key, raw[0]) if len(raw) == 1 else MatchAny(key, tuple(raw)))
    return Slice(p.searchable_filter(Filter(must=tuple(conditions))), frozenset(tenants), points)
