"""The Store protocol and the plain data types both adapters speak.

Adapters translate these into their own client types, so consolidation code never
imports a Qdrant module and works the same on the embedded engine and on a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
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
class SparseVector:
    """A sparse vector as Qdrant stores it (BM25 and SPLADE slots of hybrid search)."""

    indices: np.ndarray  # int64, unique, >= 0
    values: np.ndarray  # float32

    @classmethod
    def of(cls, indices: Any, values: Any) -> SparseVector:
        """Checked: the same number of indices and values, indices in 0..2**32-1 (Qdrant's),
        finite values."""
        try:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        except OverflowError:
            raise ValueError("an index over 2**32 - 1") from None
        val = np.asarray(values, dtype=np.float32).reshape(-1)
        if idx.size != val.size:
            raise ValueError(f"{idx.size} indices but {val.size} values")
        if idx.size and int(idx.min()) < 0:
            raise ValueError(f"negative index {int(idx.min())}")
        if idx.size and int(idx.max()) >= 2**32:
            raise ValueError(f"index {int(idx.max())} over 2**32 - 1")
        if not np.all(np.isfinite(val)):
            raise ValueError("NaN or infinite values")
        return cls(idx, val)


Vector = Union[np.ndarray, SparseVector]  # noqa: UP007


@dataclass
class Record:
    """A point. `vector` is the dense vector consolidation works on (the layout's named
    one, or the unnamed one); `others` holds every other vector the point carries (named
    dense vectors, sparse vectors), kept and written back as they are."""

    id: PointId
    vector: np.ndarray | None
    payload: dict[str, Any] = field(default_factory=dict)
    others: dict[str, Vector] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorSchema:
    """A collection's vectors as Qdrant configures them: dense vectors by name ("" is the
    unnamed one) with their sizes, and sparse vectors by name (with IDF weighting or not)."""

    dense: tuple[tuple[str, int], ...]
    sparse: tuple[tuple[str, bool], ...] = ()
    # each dense vector's distance where it is not Cosine: the archive mirrors it, or an
    # undo would bring a Dot memory back normalised
    distances: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def distance_of(self, name: str) -> str:
        return dict(self.distances).get(name, "Cosine")

    @classmethod
    def single(cls, size: int, name: str = "") -> VectorSchema:
        return cls(dense=((name, size),))

    def size_of(self, name: str) -> int | None:
        return dict(self.dense).get(name)

    def describe(self) -> str:
        dense = ", ".join(f"{n or '(unnamed)'}: {s}" for n, s in self.dense) or "none"
        sparse = ", ".join(n for n, _ in self.sparse) or "none"
        return f"dense vectors {dense}; sparse vectors {sparse}"


@dataclass
class Hit(Record):
    score: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # what a ranked score is made of


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
    payload_keys: tuple[str, ...] | None = None  # only these (dotted) paths; None: the whole payload

    def with_payload(self) -> bool | list[str]:
        return payload_selector(self.payload_keys)


def payload_selector(keys: tuple[str, ...] | None) -> bool | list[str]:
    """What both clients take as `with_payload` for these keys (None: the whole payload;
    none: no payload, the ids alone)."""
    if keys is None:
        return True
    return list(keys) or False


TenantOf = Callable[[Mapping[str, Any]], tuple[Any, ...]]  # a payload -> its tenant (Layout.tenant)


class Store(Protocol):
    """What reverie needs from a vector store, named after Qdrant's own client methods."""

    def ensure_collection(self, name: str, schema: VectorSchema, on_disk: bool = False) -> None:
        """Create the collection with `schema` if missing; fail, naming the difference, if
        it exists and cannot hold such points. `on_disk`: a new collection's vectors are
        read from disk as needed instead of held in memory (the archive, read for undo and
        recovery only: at 10M memories its 2M copies would take 3 GB of memory)."""

    def collection_exists(self, name: str) -> bool: ...

    def schema(self, name: str) -> VectorSchema | None:
        """The collection's vectors, or None if it does not exist."""

    def use_vector(self, name: str, vector_name: str) -> None:
        """Which dense vector of the collection is a Record's `vector` (reads, writes and
        queries); "" (the default) is the unnamed one."""

    def use_tenants(self, name: str, tenant_of: TenantOf) -> None:
        """How to read a point's tenant (the layout's), for a store that places points by
        tenant (storage.shard_buckets); a store of one shard ignores it."""

    def vector_size(self, name: str) -> int | None:
        """The size of the collection's vector in use, or None if it does not exist."""

    def distance(self, name: str) -> str:
        """How the collection's vector in use is searched: "Cosine", "Dot", "Euclid" or
        "Manhattan" (Qdrant's names)."""

    def create_payload_index(self, name: str, key: str, tenant: bool = False) -> None:
        """Keyword index on a payload key (partition keys, reverie's state). `tenant`: the
        key tells tenants apart (Qdrant's is_tenant): the engine stores each tenant's points
        together, so a tenant's search reads a few runs of pages, not one page a point. A
        plain index on a tenant key is rebuilt as a tenant index."""

    def upsert(self, name: str, records: Sequence[Record]) -> None: ...

    def retrieve(self, name: str, ids: Sequence[PointId], with_vectors: bool = True) -> list[Record]:
        """Existing points among `ids`, in no particular order; unknown ids are left out."""

    def scroll(
        self,
        name: str,
        filter: Filter | None = None,
        with_vectors: bool = False,
        batch_size: int = 512,
        payload_keys: tuple[str, ...] | None = None,
    ) -> Iterator[Record]:
        """Every matching point, page by page; `payload_keys` as in QueryRequest (the
        binding converts every payload value it hands over: ids alone are cheaper)."""

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

    def facet(self, name: str, key: str, filter: Filter | None = None) -> dict[str | int, int]:
        """Exact count of the matching points holding each value of `key`, read from the
        key's index (no payload is read): a point holding a list counts under each of its
        values, one without a value under none."""

    def optimize(self, name: str) -> None:
        """Storage maintenance after large changes (a no-op where the server does it)."""

    def problem(self) -> str | None:
        """Why writes cannot be kept now (an embedded store's directory gone or read-only, a
        flush that failed), or None. Writes are refused and readiness fails meanwhile."""

    def close(self) -> None: ...


class VectorNames:
    """Which dense vector of each collection a Record's `vector` is (both adapters)."""

    def __init__(self) -> None:
        self._vector_names: dict[str, str] = {}

    def schema(self, name: str) -> VectorSchema | None:
        raise NotImplementedError

    def use_vector(self, name: str, vector_name: str) -> None:
        self._vector_names[name] = vector_name

    def vector_in_use(self, name: str) -> str:
        return self._vector_names.get(name, "")

    def vector_size(self, name: str) -> int | None:
        schema = self.schema(name)
        return None if schema is None else schema.size_of(self.vector_in_use(name))


def as_vector(values: Any) -> np.ndarray:
    """float32, as Qdrant stores it; a value too large becomes inf, which validation names."""
    if isinstance(values, np.ndarray) and values.dtype == np.float32:
        return values  # as it is: np.errstate alone costs 5 us, per memory of a write
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32)


def record_from(point: Any, vector_name: str = "") -> Record:
    """Convert either client's record type (anything with id, vector, payload); with named
    vectors, `vector_name`'s is the record's vector and the rest go to `others`."""
    # read back from storage: finite float32 already, no overflow to guard against
    raw = point.vector
    others: dict[str, Vector] = {}
    if isinstance(raw, dict):
        named = dict(raw)
        raw = named.pop(vector_name, None)
        others = {name: _vector_from(value) for name, value in named.items()}
    vector = None if raw is None else np.asarray(raw, dtype=np.float32)
    return Record(normalize_id(point.id), vector, dict(point.payload or {}), others)


def _vector_from(value: Any) -> Vector:
    if hasattr(value, "indices"):
        return SparseVector.of(value.indices, value.values)
    return np.asarray(value, dtype=np.float32)


def point_vector(record: Record, vector_name: str, sparse: Callable[[SparseVector], Any]) -> Any:
    """What a client's point takes as its vector: a plain list for a collection with only
    the unnamed vector, else a dict by name (`sparse` makes the client's sparse type)."""
    dense = as_vector(record.vector).tolist()
    if not vector_name and not record.others:
        return dense
    named: dict[str, Any] = {vector_name: dense}
    for name, value in record.others.items():
        named[name] = sparse(value) if isinstance(value, SparseVector) else as_vector(value).tolist()
    return named


def hit_from(point: Any, vector_name: str = "") -> Hit:
    record = record_from(point, vector_name)
    return Hit(record.id, record.vector, record.payload, record.others, score=point.score)


def paged(fetch: Callable[[Any], tuple[Sequence[Any], Any]], vector_name: str = "") -> Iterator[Record]:
    """Every record of a paginated scroll; `fetch(offset)` returns (page, next offset)."""
    offset = None
    while True:
        page, offset = fetch(offset)
        yield from (record_from(r, vector_name) for r in page)
        if offset is None:
            return


def schema_problem(existing: VectorSchema, wanted: VectorSchema) -> str | None:
    """Why a collection with `existing` vectors cannot hold points shaped for `wanted`."""
    have = dict(existing.dense)
    for name, size in wanted.dense:
        if name not in have:
            return f"has no dense vector named {name!r} ({existing.describe()})"
        if have[name] != size:
            return f"holds {have[name]}-dimensional vectors{f' under {name!r}' if name else ''}, not {size}"
    missing = [n for n, _ in wanted.sparse if n not in dict(existing.sparse)]
    if missing:
        return f"has no sparse vector named {missing[0]!r} ({existing.describe()})"
    return None
