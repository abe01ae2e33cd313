"""Embedded storage: qdrant-edge-py, Qdrant's Rust engine in-process.

One directory per collection (`<root>/<name>/shard`, plus `meta.json` with its vectors'
names and sizes, which the engine does not report back). Only one process may open a shard: a
second one gets a StorageError that says so.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
import structlog

from reverie.errors import InvalidInputError, StorageError
from reverie.storage.base import (
    Condition,
    Filter,
    HasId,
    Hit,
    IsEmpty,
    Match,
    MatchAny,
    PointId,
    QueryRequest,
    Record,
    SparseVector,
    TenantOf,
    VectorNames,
    VectorSchema,
    as_vector,
    hit_from,
    normalize_id,
    paged,
    payload_selector,
    point_vector,
    record_from,
    schema_problem,
)
from reverie.storage.space import ensure_free_space
from reverie.whole_files import replaced_whole

log = structlog.get_logger("reverie.storage")


class EdgeStore(VectorNames):
    def __init__(self, root: Path, min_free_mb: int = 0, flush_every: float = 60.0) -> None:
        """`min_free_mb`: opening or creating a collection is refused below this much free
        disk (the engine allocates through memory maps; see space.py). `flush_every`:
        seconds between flushes of a collection that is being written (see `_update`)."""
        super().__init__()
        self._root = Path(root)
        self._min_free_mb = min_free_mb
        self._flush_every = flush_every
        self._shards: dict[str, qe.EdgeShard] = {}
        self._flushed_at: dict[str, float] = {}
        self._schemas: dict[str, VectorSchema] = {}  # meta.json, read once: every write asks
        self._lock = threading.Lock()
        # The engine's flush fails (a panic) when it meets a write or an optimization in
        # progress: writes and flushes go one at a time, and a flush skips a busy optimizer.
        self._writing = threading.RLock()  # held across resolving a filter and the write
        self._optimizing = threading.Lock()
        self._flush_problem: str | None = None

    # -- collections -------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self._root / name

    def collection_exists(self, name: str) -> bool:
        return (self._dir(name) / "meta.json").is_file()

    def schema(self, name: str) -> VectorSchema | None:
        if name in self._schemas:
            return self._schemas[name]
        if not self.collection_exists(name):
            return None
        meta = json.loads((self._dir(name) / "meta.json").read_text())
        if "vector_size" in meta:  # written before named vectors
            schema = VectorSchema.single(int(meta["vector_size"]))
        else:
            schema = VectorSchema(
                tuple((n, int(s)) for n, s in meta["dense"]), tuple((n, bool(i)) for n, i in meta["sparse"])
            )
        self._schemas[name] = schema
        return schema

    def ensure_collection(self, name: str, schema: VectorSchema, on_disk: bool = False) -> None:
        existing = self.schema(name)
        if existing is not None:
            problem = schema_problem(existing, schema)
            if problem:
                raise StorageError(
                    f"collection {name!r} {problem}: use another collection or the matching embedder"
                )
            self._shard(name)
            return
        directory = self._dir(name)
        ensure_free_space(self._root, self._min_free_mb)
        directory.mkdir(parents=True, exist_ok=True)
        memory = qe.Memory.Cold if on_disk else qe.Memory.Cached  # Cached: loaded whole at open
        dense = {
            n: qe.EdgeVectorParams(size=s, distance=qe.Distance.Cosine, memory=memory)
            for n, s in schema.dense
        }
        sparse = {
            n: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if idf else None)
            for n, idf in schema.sparse
        }
        config = qe.EdgeConfig(
            vectors=dense[""] if list(dense) == [""] else dense, sparse_vectors=sparse or None
        )
        with self._lock:
            try:
                self._shards[name] = qe.EdgeShard.create(str(directory / "shard"), config)
            except Exception as exc:
                raise StorageError(f"cannot create collection {name!r}: {exc}") from None
            self._flushed_at[name] = time.monotonic()
        # meta.json last: its presence marks a complete collection.
        with replaced_whole(directory / "meta.json") as scratch:
            scratch.write_text(json.dumps({"dense": schema.dense, "sparse": schema.sparse}))

    def _shard(self, name: str) -> qe.EdgeShard:
        with self._lock:
            shard = self._shards.get(name)
            if shard is not None:
                return shard
            if not self.collection_exists(name):
                raise StorageError(f"collection {name!r} does not exist in {self._root}")
            ensure_free_space(self._root, self._min_free_mb)  # loading allocates log segments
            try:
                shard = qe.EdgeShard.load(str(self._dir(name) / "shard"))
            except Exception as exc:
                if "WouldBlock" in str(exc):
                    raise StorageError(
                        f"the embedded store {self._dir(name)} is open in another process "
                        "(a running `reverie serve`?): stop it or go through its HTTP API"
                    ) from None
                raise StorageError(f"cannot open collection {name!r}: {exc}") from None
            self._shards[name] = shard
            self._flushed_at[name] = time.monotonic()
            return shard

    def create_payload_index(self, name: str, key: str, tenant: bool = False) -> None:
        existing = self._shard(name).info().payload_schema.get(key)
        if existing is not None and (not tenant or getattr(existing.params, "is_tenant", False)):
            return
        schema = qe.KeywordIndexParams(is_tenant=True) if tenant else qe.PayloadSchemaType.Keyword
        self._update(name, qe.UpdateOperation.create_field_index(key, schema))

    def _update(self, name: str, operation: qe.UpdateOperation) -> None:
        """Apply a write; flush the collection when the last flush is `flush_every` old.
        Until it is flushed, the engine neither truncates its write-ahead log nor reuses
        the payload space that updates free: a daemon that never closes its store grew
        without bound (both files, and the memory that maps them) before this."""
        shard = self._shard(name)
        with self._writing:
            shard.update(operation)
            if time.monotonic() - self._flushed_at[name] < self._flush_every:
                return
            if self._optimizing.acquire(blocking=False):  # else: at a later write
                try:
                    shard.flush()
                    self._flushed_at[name], self._flush_problem = time.monotonic(), None
                except Exception as exc:  # the write is in the log already: it stands
                    self._flush_problem = f"flushing {name!r} failed: {exc}"
                    log.error("storage.flush_failed", collection=name, error=str(exc))
                finally:
                    self._optimizing.release()

    def use_tenants(self, name: str, tenant_of: TenantOf) -> None:
        """One shard: nothing is placed by tenant."""

    def distance(self, name: str) -> str:
        return "Cosine"  # reverie makes every embedded collection, always for cosine

    def problem(self) -> str | None:
        if self._shards and not self._root.is_dir():
            return f"the data directory {self._root} is gone (writes would be lost at the next restart)"
        existing = self._root if self._root.is_dir() else self._root.parent
        if existing.is_dir() and not os.access(existing, os.W_OK):
            return f"the data directory {existing} is not writable"
        return self._flush_problem

    # -- points ------------------------------------------------------------------------
    def upsert(self, name: str, records: Sequence[Record]) -> None:
        if not records:
            return
        using = self.vector_in_use(name)
        if using or any(r.others for r in records):
            points = [qe.Point(r.id, point_vector(r, using, _sparse), r.payload) for r in records]
        else:
            # one conversion of the whole batch to lists: a third of the cost of one per point
            vectors = np.stack([as_vector(r.vector) for r in records]).tolist()
            points = [qe.Point(r.id, v, r.payload) for r, v in zip(records, vectors, strict=True)]
        try:
            self._update(name, qe.UpdateOperation.upsert_points(points))
        except StorageError:
            raise
        except Exception as exc:
            if "dimension" in str(exc).lower():
                raise InvalidInputError(f"wrong vector dimension: {exc}") from None
            raise StorageError(f"upsert into {name!r} failed: {exc}") from None

    def retrieve(self, name: str, ids: Sequence[PointId], with_vectors: bool = True) -> list[Record]:
        if not ids:
            return []
        found = self._shard(name).retrieve(list(ids), True, with_vectors)
        return [record_from(r, self.vector_in_use(name)) for r in found]

    def scroll(
        self,
        name: str,
        filter: Filter | None = None,
        with_vectors: bool = False,
        batch_size: int = 512,
        payload_keys: tuple[str, ...] | None = None,
    ) -> Iterator[Record]:
        shard, matching = self._shard(name), _filter(filter)  # once: a slice's filter names thousands
        with_payload = payload_selector(payload_keys)
        return paged(
            lambda offset: shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=batch_size,
                    filter=matching,
                    with_payload=with_payload,
                    with_vector=with_vectors,
                )
            ),
            self.vector_in_use(name),
        )

    def query(self, name: str, request: QueryRequest) -> list[Hit]:
        return self.query_batch(name, [request])[0]

    def query_batch(self, name: str, requests: Sequence[QueryRequest]) -> list[list[Hit]]:
        if not requests:
            return []
        using = self.vector_in_use(name)
        batch = qe.QueryBatchRequest([_query(r, using) for r in requests])
        return [[hit_from(p, using) for p in result] for result in self._shard(name).query_batch(batch)]

    def delete(self, name: str, ids: Sequence[PointId], only: Filter | None = None) -> None:
        if not ids:
            return
        with self._writing:
            targets = list(ids) if only is None else self._matching(name, ids, only)
            if targets:
                self._update(name, qe.UpdateOperation.delete_points(targets))

    def set_payload(
        self, name: str, ids: Sequence[PointId], payload: dict[str, Any], key: str | None = None
    ) -> None:
        if not ids:
            return
        with self._writing:  # an id deleted meanwhile is skipped, as delete skips it
            targets = self._matching(name, ids)
            if targets:
                self._update(name, qe.UpdateOperation.set_payload(targets, payload, key=key))

    def _matching(self, name: str, ids: Sequence[PointId], only: Filter | None = None) -> list[PointId]:
        """The points among `ids` that exist (and match `only`), resolved before the write,
        so the write-ahead log holds ids and never a filter. A filter in the log is
        resolved again when a restart replays it, against another state (qdrant#9575):
        after a SIGKILL, a set_payload by filter failed with "No point with id" on a point
        that was there, and a delete by filter can bring points back."""
        which = _filter(Filter(must=(HasId(tuple(ids)), *(() if only is None else (only,)))))
        request = qe.ScrollRequest(limit=len(ids), filter=which, with_payload=False, with_vector=False)
        found, _ = self._shard(name).scroll(request)
        return [normalize_id(point.id) for point in found]

    def count(self, name: str, filter: Filter | None = None) -> int:
        # Unfiltered, the estimate is the segments' own tally and exact; an exact count
        # visits every point (7 ms at 80,000 points, growing with the collection).
        exact = filter is not None
        return self._shard(name).count(qe.CountRequest(exact=exact, filter=_filter(filter)))

    def facet(self, name: str, key: str, filter: Filter | None = None) -> dict[str | int, int]:
        shard = self._shard(name)
        limit = max(1, self.count(name))  # every value: never more values than points
        request = qe.FacetRequest(key, limit=limit, exact=True, filter=_filter(filter))
        try:
            hits = shard.facet(request).hits
        except Exception as exc:  # no index on the key
            raise StorageError(f"facet of {key!r} in {name!r} failed: {exc}") from None
        return {hit.value: hit.count for hit in hits}

    def optimize(self, name: str) -> None:
        shard = self._shard(name)
        with self._optimizing:
            shard.optimize()

    def close(self) -> None:
        with self._lock, self._writing:
            for name, shard in self._shards.items():
                try:
                    shard.flush()
                except Exception as exc:  # its directory is gone or read-only: said, every shard closes
                    log.error("storage.close_flush_failed", collection=name, error=str(exc))
                shard.close()
            self._shards.clear()


def _query(r: QueryRequest, using: str) -> qe.QueryRequest:
    return qe.QueryRequest(
        limit=r.limit,
        query=qe.Query.Nearest(as_vector(r.vector).tolist(), using=using or None),
        filter=_filter(r.filter),
        score_threshold=r.score_threshold,
        with_payload=r.with_payload(),
        with_vector=r.with_vectors,
        params=qe.SearchParams(hnsw_ef=r.hnsw_ef) if r.hnsw_ef else None,
    )


def _sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(vector.indices.tolist(), vector.values.tolist())


def _filter(f: Filter | None) -> qe.Filter | None:
    if f is None:
        return None
    return qe.Filter(
        must=[_condition(c) for c in f.must] or None,
        should=[_condition(c) for c in f.should] or None,
        must_not=[_condition(c) for c in f.must_not] or None,
    )


def _condition(c: Condition) -> Any:
    if isinstance(c, Match):
        return qe.FieldCondition(c.key, match=qe.MatchValue(c.value))
    if isinstance(c, MatchAny):
        return qe.FieldCondition(c.key, match=qe.MatchAny(list(c.values)))
    if isinstance(c, IsEmpty):
        return qe.IsEmptyCondition(c.key)
    if isinstance(c, HasId):
        return qe.HasIdCondition(set(c.ids))
    return _filter(c)
