"""The embedded store under steady updates: a store that stays open (a daemon) must not
grow without bound, and its periodic flush must not collide with writers or an
optimization running on other threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reverie.storage import Record
from reverie.storage.base import VectorSchema
from reverie.storage.edge import EdgeStore

from helpers import errors_in_threads

IDS = list(range(2000))


def rewrite_all(store: EdgeStore, rng: np.random.Generator, round_: int) -> None:
    vectors = rng.normal(size=(len(IDS), 32)).astype(np.float32)
    store.upsert(
        "c", [Record(i, v, {"text": "x" * 300, "round": round_}) for i, v in zip(IDS, vectors, strict=True)]
    )
    store.set_payload("c", IDS, {"state": "live"}, key="_reverie")


def megabytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 2**20


def test_an_open_store_under_updates_stays_bounded(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, flush_every=0.2)
    store.ensure_collection("c", VectorSchema.single(32))
    rng = np.random.default_rng(0)
    sizes = []
    for round_ in range(120):  # each round rewrites every point: about 1.5 MB of log
        rewrite_all(store, rng, round_)
        if round_ % 30 == 29:
            sizes.append(megabytes(tmp_path))
    store.close()
    # unflushed, the log and the payload pages grow by a 32 MB file every 20-30 rounds
    assert sizes[-1] == sizes[1], sizes  # the first 30 rounds fill the files it then reuses


def test_flushes_meet_concurrent_writers_and_optimization_safely(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, flush_every=0.001)  # a flush at almost every write
    store.ensure_collection("c", VectorSchema.single(32))

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for round_ in range(15):
            if seed == 0:
                store.optimize("c")
            else:
                rewrite_all(store, rng, round_)

    errors = errors_in_threads(work, 4)
    assert not errors, errors
    assert store.count("c") == len(IDS)
    store.close()
