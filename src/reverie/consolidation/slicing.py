"""A full pass one slice of tenants at a time, so its memory follows the largest tenant.

Gathering every point of a collection into one matrix holds all its vectors at once (10M
memories: 15 GB of vectors plus their records), although no merge ever crosses a tenant.
So a full pass first counts the points of each tenant (a scroll of payloads, no vectors),
then gathers, plans and applies a few tenants at a time: whole tenants, up to
`consolidation.slice_points` points a slice, and a tenant larger than that alone. Peak
memory is then the largest slice plus what stays open, whatever the collection's size.

A collection without tenant keys (or declared single-tenant) is one slice. Points whose
tenant cannot be read are a slice of their own, picked by id: adoption quarantines them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


def tenant_slices(
    store: Store, collection: str, layout: Layout, owns: Callable[[Tenant], bool], budget: int
) -> Iterator[Slice]:
    """The searchable points this replica owns, counted by tenant, then cut into slices of
    whole tenants of up to `budget` points, largest tenants first."""
    counts: Counter[Tenant] = Counter()
    unreadable: list[PointId] = []
    for record in store.scroll(collection, p.searchable_filter(), batch_size=2048):
        try:
            tenant = layout.tenant(record.payload)
        except PayloadError:
            unreadable.append(record.id)
            continue
        if owns(tenant):
            counts[tenant] += 1
    chosen: list[Tenant] = []
    size = 0
    for tenant, count in counts.most_common():
        if chosen and size + count > budget:
            yield _slice(chosen, size, layout)
            chosen, size = [], 0
        chosen.append(tenant)
        size += count
    if chosen:
        yield _slice(chosen, size, layout)
    if unreadable:
        by_id = p.searchable_filter(Filter(must=(HasId(tuple(unreadable)),)))
        yield Slice(by_id, frozenset(), len(unreadable))


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
