"""The Store protocol and the plain data types both adapters speak.

Adapters translate these into their own client types, so consolidation code never
imports a Qdrant module and works the same on the embedded engine and on a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import numpy as np

PointId = int | str


def normalize_id(raw: Any) -> PointId:
    """Qdrant ids are unsigned ints or UUIDs; we carry UUIDs as canonical strings."""
    if isinstance(raw, bool):
        raise TypeError("a point id cannot be a boolean")
    if isinstance(raw, int):
        if not 0 <= raw < 2**64:
            raise ValueError(f"a point id must be an unsigned 64-bit integer or a UUID, not {raw}")
        return raw
    return str(uuid.UUID(str(raw)))


def parse_point_id(text: str) -> PointId:
    """An id typed in a path or on the command line: ASCII digits are an integer id
    ("²".isdigit() is true, but it is no id), anything else a UUID."""
    return normalize_id(int(text) if text.isascii() and text.isdigit() else text)


@dataclass
class Record:
    id: PointId
    vector: np.ndarray | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit(Record):
    score: float = 0.0


@dataclass(frozen=True)
class Match:
    """Exact keyword or integer match. No booleans: qdrant-edge-py 0.9 reads a Python
    bool as the integer 1/0, so `true` in a payload never matches (see storage tests)."""

    key: str
    value: str | int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool):
            raise TypeError(f"Match({self.key!r}): boolean values cannot be matched portably")


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class IsEmpty:
    """The key is missing, null or an empty list."""

    key: str


@dataclass(frozen=True)
class HasId:
    ids: tuple[PointId, ...]


@dataclass(frozen=True)
class Filter:
    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


Condition = Union[Match, MatchAny, IsEmpty, HasId, Filter]  # noqa: UP007 (forward ref)


@dataclass(frozen=True)
class QueryRequest:
    vector: np.ndarray
    limit: int
    score_threshold: float | None = None
    filter: Filter | None = None
    with_vectors: bool = False
    hnsw_ef: int | None = None  # the index's search breadth; None: the collection's default


class Store(Protocol):
    """What reverie needs from a vector store, named after Qdrant's own client methods."""

    def ensure_collection(self, name: str, vector_size: int) -> None:
        """Create the collection if missing; fail if it exists with another vector size."""

    def collection_exists(self, name: str) -> bool: ...

    def vector_size(self, name: str) -> int | None:
        """The collection's vector size, or None if it does not exist."""

    def create_payload_index(self, name: str, key: str) -> None:
        """Keyword index on a payload key (partition keys, reverie's state)."""

    def upsert(self, name: str, records: Sequence[Record]) -> None: ...

    def retrieve(self, name: str, ids: Sequence[PointId], with_vectors: bool = True) -> list[Record]:
        """Existing points among `ids`, in no particular order; unknown ids are left out."""

    def scroll(
        self,
        name: str,
        filter: Filter | None = None,
        with_vectors: bool = False,
        batch_size: int = 512,
    ) -> Iterator[Record]:
        """Every matching point, page by page."""

    def query(self, name: str, request: QueryRequest) -> list[Hit]: ...

    def query_batch(self, name: str, requests: Sequence[QueryRequest]) -> list[list[Hit]]: ...

    def delete(self, name: str, ids: Sequence[PointId], only: Filter | None = None) -> None:
        """Delete the points among `ids` (those that also match `only`, when given: a
        point rewritten since it was marked is left alone)."""

    def set_payload(
        self, name: str, ids: Sequence[PointId], payload: dict[str, Any], key: str | None = None
    ) -> None:
        """Merge `payload` into each point's payload (or into the object at `key`);
        ids that do not exist are skipped, as `delete` skips them."""

    def count(self, name: str, filter: Filter | None = None) -> int: ...

    def optimize(self, name: str) -> None:
        """Storage maintenance after large changes (a no-op where the server does it)."""

    def close(self) -> None: ...


def as_vector(values: Any) -> np.ndarray:
    """float32, as Qdrant stores it; a value too large becomes inf, which validation names."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32)


def record_from(point: Any) -> Record:
    """Convert either client's record type (anything with id, vector, payload)."""
    # read back from storage: finite float32 already, no overflow to guard against
    vector = None if point.vector is None else np.asarray(point.vector, dtype=np.float32)
    return Record(id=normalize_id(point.id), vector=vector, payload=dict(point.payload or {}))


def hit_from(point: Any) -> Hit:
    record = record_from(point)
    return Hit(id=record.id, vector=record.vector, payload=record.payload, score=point.score)


def paged(fetch: Callable[[Any], tuple[Sequence[Any], Any]]) -> Iterator[Record]:
    """Every record of a paginated scroll; `fetch(offset)` returns (page, next offset)."""
    offset = None
    while True:
        page, offset = fetch(offset)
        yield from (record_from(r) for r in page)
        if offset is None:
            return
