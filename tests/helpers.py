"""Test helpers: synthetic near-duplicate vectors, the store invariants, a live API."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI

from reverie.memory import NewMemory, Reverie


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


def errors_in_threads(work: Callable[[int], object], count: int) -> list[BaseException]:
    """Run work(0..count-1) on as many threads at once; what each raised (an engine's
    panic arrives as a BaseException)."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def check_invariants(rv: Reverie, originals: set[object]) -> None:
    """Exactly `originals` are covered, and every store invariant holds
    (reverie.ledger.invariants)."""
    problems = rv.invariant_problems(must_hold=originals, may_hold=originals)
    assert not problems, problems


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
        # tests check behaviour, not timings: an inversion on a busy 2-core CI machine can take
        # longer than httpx's default 5 s
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
