"""Many tenants in the embedded store: the tenant keys are Qdrant tenant indexes, so the
engine stores each tenant's points together and a tenant's search (every incremental pass
makes one per fresh memory) reads a few runs of pages instead of one page per point, which
decides its speed once the store outgrows the page cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reverie.config import Settings
from reverie.memory import NewMemory, Reverie
from reverie.storage import Record
from reverie.storage.base import VectorSchema
from reverie.storage.edge import EdgeStore


def index_kinds(store: EdgeStore, collection: str) -> dict[str, bool]:
    """Indexed key -> whether the engine holds it as a tenant index."""
    schema = store._shard(collection).info().payload_schema
    return {key: bool(getattr(info.params, "is_tenant", False)) for key, info in schema.items()}


def test_tenant_keys_are_tenant_indexes_and_a_plain_one_is_rebuilt_as_one(tmp_path: Path) -> None:
    settings = Settings()
    settings.storage.data_dir = tmp_path
    store = EdgeStore(tmp_path / "collections")
    store.ensure_collection("memories", VectorSchema.single(8))
    store.create_payload_index("memories", "user_id")  # as reverie indexed tenant keys before
    with Reverie(settings, store) as rv:
        rv.write([NewMemory(np.ones(8, dtype=np.float32), {"user_id": "u1"}, 1)])
        kinds = index_kinds(store, rv.collection)
    assert kinds["user_id"] and kinds["agent_id"], kinds
    assert not kinds["_reverie.state"], "reverie's own keys are not tenants"


def test_a_tenants_vectors_lie_together_on_disk_once_optimized(tmp_path: Path) -> None:
    """Written interleaved (each tenant's memories arrive among everyone's), stored grouped:
    read back from the segment's vector file, the rows come in one run per tenant."""
    n, dim, tenants = 20_000, 192, 50  # past the engine's indexing threshold (10 MB of vectors)
    vectors = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    tenant = np.arange(n) % tenants
    store = EdgeStore(tmp_path)
    store.ensure_collection("c", VectorSchema.single(dim))
    store.create_payload_index("c", "user_id", tenant=True)
    for start in range(0, n, 5_000):
        rows = range(start, start + 5_000)
        store.upsert("c", [Record(i, vectors[i], {"user_id": f"u{tenant[i]}"}) for i in rows])
    store.optimize("c")
    store.close()
    (matrix,) = [f for f in tmp_path.rglob("matrix.dat") if f.stat().st_size >= n * dim * 4]
    raw = matrix.read_bytes()  # the rows, after a small header
    stored = np.frombuffer(raw[len(raw) % (dim * 4) :], dtype=np.float32).reshape(-1, dim)
    order = np.argmax(stored @ vectors.T, axis=1)  # which memory each stored row is
    assert len(set(order.tolist())) == n
    runs = 1 + int(np.count_nonzero(tenant[order][1:] != tenant[order][:-1]))
    assert runs <= tenants + 2, f"{runs} runs of one tenant's rows for {tenants} tenants"


def vector_storage(collection_dir: Path) -> set[str]:
    """Where the engine keeps each segment's vectors, as its segments record it."""
    segments = collection_dir.rglob("segment.json")
    return {json.loads(s.read_text())["config"]["vector_data"][""]["storage_type"] for s in segments}


def test_the_archive_keeps_its_vectors_on_disk_and_the_collection_in_memory(tmp_path: Path) -> None:
    """The archive is read for undo and recovery only: its vectors are paged in on demand,
    not loaded whole at open beside the live collection's (at 10M memories, 2M archived
    copies would take 3 GB of a 24 GiB machine)."""
    settings = Settings()
    settings.storage.data_dir = tmp_path
    with Reverie.open(settings) as rv:
        rv.write([NewMemory(np.ones(8, dtype=np.float32), {"user_id": "u1"}, 1)])
        collection, archive = rv.collection, rv.archive
    root = tmp_path / "collections"
    assert vector_storage(root / collection) == {"InRamChunkedMmap"}
    assert vector_storage(root / archive) == {"ChunkedMmap"}
