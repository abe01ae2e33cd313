"""Server storage: qdrant-client against a Qdrant URL (or its local mode, in tests)."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from reverie.errors import InvalidInputError, StorageError, StorageUnreachableError
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
    paged,
    payload_selector,
    point_vector,
    record_from,
    schema_problem,
)
from reverie.storage.buckets import bucket_of
from reverie.storage.layouts import PayloadError

R = TypeVar("R", bound=Record)


class _Client:
    """qdrant-client with two adjustments. Its local mode is not thread-safe: a daemon's
    API threads writing while its scheduler scrolls made it raise IndexError from its own
    arrays (found by bench/crash_torture.py), so there calls go one at a time. And a
    server that cannot be reached is a StorageError naming it, not a transport traceback,
    so the daemon can say so and retry."""

    def __init__(self, client: QdrantClient, where: str, serialize: bool) -> None:
        self._client = client
        self._where = where
        self._lock = threading.Lock() if serialize else contextlib.nullcontext()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                try:
                    return method(*args, **kwargs)
                except (ResponseHandlingException, httpx.TransportError) as exc:
                    raise StorageUnreachableError(f"Qdrant at {self._where} is unreachable: {exc}") from None

        return call


class ServerStore(VectorNames):
    def __init__(self, client: _Client, local: bool = False, shard_buckets: int | None = None) -> None:
        """`shard_buckets`: write each point to shard key "bucket-<k>", k its tenant's bucket
        (storage.shard_buckets), for a collection with custom sharding."""
        super().__init__()
        self._client = client
        self._buckets = shard_buckets
        self._tenant_of: dict[str, TenantOf] = {}
        # qdrant-client's local mode hands a Cosine collection's vectors back as written once
        # it is reopened (the same client, like a server, hands them back normalised): the
        # vector an agent wrote then changed under a merge between two reads. Read as a
        # server would answer.
        self._local = local
        self._normalised: dict[str, bool] = {}

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, shard_buckets: int | None = None) -> ServerStore:
        """`url` is an http(s) address, or qdrant-client's local mode: ":memory:", or
        "file:DIR" on disk (no server; for tests and small single-process setups)."""
        if url == ":memory:":
            return cls(_Client(QdrantClient(location=":memory:"), url, serialize=True), True, shard_buckets)
        if url.startswith("file:"):
            try:
                local = QdrantClient(path=url.removeprefix("file:"))
            except RuntimeError as exc:  # another process (an agent's own client) holds the folder
                raise StorageError(f"cannot open {url} (storage.url): {exc}") from None
            return cls(_Client(local, url, serialize=True), True, shard_buckets)
        return cls(
            _Client(QdrantClient(url=url, api_key=api_key), url, serialize=False), False, shard_buckets
        )

    def use_tenants(self, name: str, tenant_of: TenantOf) -> None:
        self._tenant_of[name] = tenant_of

    def collection_exists(self, name: str) -> bool:
        return self._client.collection_exists(name)

    def schema(self, name: str) -> VectorSchema | None:
        if not self.collection_exists(name):
            return None
        params = self._client.get_collection(name).config.params
        vectors = params.vectors
        named = sorted(vectors.items()) if isinstance(vectors, dict) else [("", vectors)] if vectors else []
        dense = tuple((n, int(v.size)) for n, v in named)
        distances = tuple(
            (n, str(v.distance.value)) for n, v in named if v.distance != models.Distance.COSINE
        )
        sparse = tuple(
            (n, v.modifier == models.Modifier.IDF) for n, v in sorted((params.sparse_vectors or {}).items())
        )
        return VectorSchema(dense, sparse, distances)

    def ensure_collection(self, name: str, schema: VectorSchema, on_disk: bool = False) -> None:
        existing = self.schema(name)
        if existing is None:
            dense = {
                n: models.VectorParams(
                    size=s, distance=models.Distance(schema.distance_of(n)), on_disk=on_disk or None
                )
                for n, s in schema.dense
            }
            sparse = {
                n: models.SparseVectorParams(modifier=models.Modifier.IDF if idf else None)
                for n, idf in schema.sparse
            }
            self._client.create_collection(
                name,
                vectors_config=dense[""] if list(dense) == [""] else dense,
                sparse_vectors_config=sparse or None,
                sharding_method=models.ShardingMethod.CUSTOM if self._buckets else None,
            )
            if self._buckets and not self._local:  # local mode has no shards
                for bucket in range(self._buckets):
                    self._client.create_shard_key(name, shard_key=_shard_key(bucket))
            return
        self._check_sharding(name)
        problem = schema_problem(existing, schema)
        if problem:
            raise StorageError(
                f"collection {name!r} {problem}: use another collection or the matching embedder"
            )

    def create_payload_index(self, name: str, key: str, tenant: bool = False) -> None:
        schema = (
            models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
            if tenant
            else models.PayloadSchemaType.KEYWORD
        )
        with warnings.catch_warnings():
            # local mode (tests) warns that indexes do nothing there; a server builds them
            warnings.simplefilter("ignore", UserWarning)
            self._client.create_payload_index(name, key, schema)

    def _check_sharding(self, name: str) -> None:
        """With shard_buckets, an existing collection must take shard keys (a server refuses
        them from a collection Qdrant shards itself, and every write would fail)."""
        if not self._buckets or self._local:
            return
        method = self._client.get_collection(name).config.params.sharding_method
        if method != models.ShardingMethod.CUSTOM:
            raise StorageError(
                f"collection {name!r} is not sharded by shard key (its sharding_method is {method}): "
                "storage.shard_buckets needs one made with sharding_method custom and shard keys "
                f"{_shard_key(0)} .. {_shard_key(self._buckets - 1)} (or unset storage.shard_buckets)"
            )

    def upsert(self, name: str, records: Sequence[Record]) -> None:
        if not records:
            return
        using = self.vector_in_use(name)
        for shard_key, group in self._by_shard_key(name, records).items():
            points = [
                models.PointStruct(id=r.id, vector=point_vector(r, using, _sparse), payload=r.payload)
                for r in group
            ]
            try:
                self._client.upsert(name, points=points, wait=True, shard_key_selector=shard_key)
            except (ValueError, UnexpectedResponse) as exc:
                if "dim" in str(exc).lower():
                    raise InvalidInputError(f"wrong vector dimension: {exc}") from None
                raise StorageError(f"upsert into {name!r} failed: {exc}") from None

    def _by_shard_key(self, name: str, records: Sequence[Record]) -> dict[str | None, list[Record]]:
        """The records by the shard key each goes to (Qdrant takes one key a call): its
        tenant's bucket with shard_buckets, else no key (Qdrant places them)."""
        if not self._buckets:
            return {None: list(records)}
        tenant_of = self._tenant_of.get(name)
        if tenant_of is None:
            raise StorageError(f"cannot choose shard keys in {name!r}: its tenant paths are not known yet")
        groups: dict[str | None, list[Record]] = defaultdict(list)
        for record in records:
            try:
                bucket = bucket_of(tenant_of(record.payload), self._buckets)
            except PayloadError as exc:
                raise InvalidInputError(
                    f"point {record.id}: no shard key without its tenant: {exc}"
                ) from None
            groups[_shard_key(bucket)].append(record)
        return groups

    def retrieve(self, name: str, ids: Sequence[PointId], with_vectors: bool = True) -> list[Record]:
        if not ids:
            return []
        found = self._client.retrieve(name, ids=list(ids), with_vectors=with_vectors)
        return [self._as_served(name, record_from(r, self.vector_in_use(name))) for r in found]

    def scroll(
        self,
        name: str,
        filter: Filter | None = None,
        with_vectors: bool = False,
        batch_size: int = 512,
        payload_keys: tuple[str, ...] | None = None,
    ) -> Iterator[Record]:
        matching = _filter(filter)  # once, not a page: a slice's filter names thousands of tenants
        with_payload = payload_selector(payload_keys)
        pages = paged(
            lambda offset: self._client.scroll(
                name,
                scroll_filter=matching,
                limit=batch_size,
                offset=offset,
                with_vectors=with_vectors,
                with_payload=with_payload,
            ),
            self.vector_in_use(name),
        )
        return (self._as_served(name, record) for record in pages)

    def query(self, name: str, request: QueryRequest) -> list[Hit]:
        return self.query_batch(name, [request])[0]

    def query_batch(self, name: str, requests: Sequence[QueryRequest]) -> list[list[Hit]]:
        if not requests:
            return []
        using = self.vector_in_use(name)
        batch = [
            models.QueryRequest(
                query=as_vector(r.vector).tolist(),
                using=using or None,
                limit=r.limit,
                score_threshold=r.score_threshold,
                filter=_filter(r.filter),
                with_payload=r.with_payload(),
                with_vector=r.with_vectors,
                params=models.SearchParams(hnsw_ef=r.hnsw_ef) if r.hnsw_ef else None,
            )
            for r in requests
        ]
        responses = self._client.query_batch_points(name, requests=batch)
        return [
            [self._as_served(name, hit_from(p, using)) for p in response.points] for response in responses
        ]

    def _as_served(self, name: str, record: R) -> R:
        """The record as a server hands it back (see `_local`)."""
        if not self._local or record.vector is None:
            return record
        if name not in self._normalised:
            self._normalised[name] = self.distance(name) == "Cosine"
        if self._normalised[name]:
            norm = float(np.linalg.norm(record.vector))
            if norm > 0 and abs(norm - 1.0) > 1e-6:
                record.vector = (record.vector / norm).astype(np.float32)
        return record

    def delete(self, name: str, ids: Sequence[PointId], only: Filter | None = None) -> None:
        if not ids:
            return
        if only is None:
            self._client.delete(name, models.PointIdsList(points=list(ids)), wait=True)
        else:
            which = _filter(Filter(must=(HasId(tuple(ids)), only)))
            self._client.delete(name, models.FilterSelector(filter=which), wait=True)

    def set_payload(
        self, name: str, ids: Sequence[PointId], payload: dict[str, Any], key: str | None = None
    ) -> None:
        if ids:
            # by filter, so an id deleted meanwhile is skipped, as delete skips it
            only = models.Filter(must=[models.HasIdCondition(has_id=list(ids))])
            self._client.set_payload(name, payload, points=only, key=key, wait=True)

    def count(self, name: str, filter: Filter | None = None) -> int:
        return self._client.count(name, count_filter=_filter(filter), exact=True).count

    def facet(self, name: str, key: str, filter: Filter | None = None) -> dict[str | int, int]:
        limit = max(1, self.count(name))  # every value: never more values than points
        try:
            found = self._client.facet(name, key, facet_filter=_filter(filter), limit=limit, exact=True)
        except UnexpectedResponse as exc:  # no index on the key
            raise StorageError(f"facet of {key!r} in {name!r} failed: {exc}") from None
        return {hit.value: hit.count for hit in found.hits}

    def optimize(self, name: str) -> None:
        """Qdrant servers optimize segments on their own."""

    def distance(self, name: str) -> str:
        schema, using = self.schema(name), self.vector_in_use(name)
        if schema is None or schema.size_of(using) is None:
            raise StorageError(f"collection {name!r} has no vector named {using!r}")
        return schema.distance_of(using)

    def problem(self) -> str | None:
        return None  # the server keeps its own data; an unreachable one raises on each call

    def close(self) -> None:
        self._client.close()


def _shard_key(bucket: int) -> str:
    return f"bucket-{bucket}"


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())


def _filter(f: Filter | None) -> models.Filter | None:
    if f is None:
        return None
    return models.Filter(
        must=[_condition(c) for c in f.must] or None,
        should=[_condition(c) for c in f.should] or None,
        must_not=[_condition(c) for c in f.must_not] or None,
    )


def _condition(c: Condition) -> Any:
    if isinstance(c, Match):
        return models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value))
    if isinstance(c, MatchAny):
        return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.values)))
    if isinstance(c, IsEmpty):
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=c.key))
    if isinstance(c, HasId):
        return models.HasIdCondition(has_id=list(c.ids))
    return _filter(c)
