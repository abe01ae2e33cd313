"""Test helpers: synthetic near-duplicate vectors, the store invariants, a live API."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI

from reverie.memory import NewMemory, Reverie
from reverie.storage import payload as p


def near_duplicates(
    groups: int, per_group: int, dim: int = 32, noise: float = 0.08, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in tight groups (pairwise cosine about 0.99) around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(groups), per_group)
    vectors = centres[labels] + rng.normal(scale=noise / np.sqrt(dim), size=(labels.size, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


def memories(vectors: np.ndarray, labels: np.ndarray, **payload: object) -> list[NewMemory]:
    return [
        NewMemory(v, {"text": f"memory {i} of group {g}", "group": int(g), **payload}, i)
        for i, (v, g) in enumerate(zip(vectors, labels, strict=True))
    ]


def check_invariants(rv: Reverie, originals: set[object]) -> None:
    """Every original is live, or archived with a live merged point holding it in its
    lineage; live weights sum to the number of originals; nothing is left in flight."""
    live = list(rv.store.scroll(rv.collection))
    states = [p.state(r.payload) for r in live]
    assert not set(states) & set(p.IN_FLIGHT), f"in-flight points left: {states}"
    assert sum(p.weight(r.payload) for r in live) == len(originals)
    covered: list[object] = []
    for record in live:
        covered.extend(p.originals(record))
    assert sorted(map(str, covered)) == sorted(map(str, originals)), "lineage mismatch"
    live_ids = {r.id for r in live}
    if rv.store.collection_exists(rv.archive):
        for copy in rv.store.scroll(rv.archive):
            into = p.meta(copy.payload)["archived"]["merged_into"]
            assert into in live_ids or rv.store.retrieve(rv.archive, [into]), (
                f"archived {copy.id} points to {into}, which exists nowhere"
            )
    check_run_log(rv, live)


def check_run_log(rv: Reverie, live: list) -> None:
    """The run log agrees with the store: no run left `running`, no merge left
    `applying`/`undoing`; every live merged point is on record as applied by the run its
    stamp names, and every merge on record as applied still exists (live, or archived
    when merged again)."""
    runs = rv.run_log.runs(limit=10_000)
    assert not [r.run_id for r in runs if r.status == "running"], "a run is still marked running"
    for status in ("applying", "undoing"):
        assert not rv.run_log.merges_in_status(status), f"merges left {status}"
    applied = [m.merge_id for m in rv.run_log.merges_in_status("applied")]
    found = {str(r.id) for r in rv.store.retrieve(rv.collection, applied, with_vectors=False)}
    if rv.store.collection_exists(rv.archive):
        found |= {str(r.id) for r in rv.store.retrieve(rv.archive, applied, with_vectors=False)}
    assert not set(applied) - found, f"merges on record as applied but gone: {set(applied) - found}"
    for record in live:
        stamp = p.meta(record.payload)
        if stamp.get("kind") != p.MERGED:
            continue
        statuses = {m.merge_id: m.status for m in rv.run_log.merges(stamp["run_id"])}
        assert statuses.get(str(record.id)) == "applied", f"merge {record.id} not on record as applied"


def snapshot(rv: Reverie, collection: str | None = None) -> dict[object, tuple[np.ndarray, dict]]:
    """Every point of a collection: id -> (vector, payload)."""
    records = rv.store.scroll(collection or rv.collection, with_vectors=True)
    return {r.id: (r.vector, r.payload) for r in records}


def assert_same_points(actual: dict, expected: dict) -> None:
    """Exact payloads; vectors to within float32 rounding, since qdrant-client's local
    mode can hand the same stored vector back one ulp apart between reads."""
    assert actual.keys() == expected.keys()
    for key, (vector, payload) in expected.items():
        assert actual[key][1] == payload, key
        np.testing.assert_allclose(actual[key][0], vector, rtol=0, atol=1e-7)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app: FastAPI) -> Iterator[httpx.Client]:
    """The app under uvicorn in a thread, on a free loopback port, with a client for it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
