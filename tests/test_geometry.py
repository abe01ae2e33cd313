"""Every distance a collection may have, honoured (consolidation/geometry.py): merges stand
where the agent's own search looks for their members, or the run refuses with the reason.

Found by review: on a Dot collection of unnormalised vectors a merged vector was written at
length 1.0 against its members' 1.45 (the library's own hit@1 fell from 54 to 33), and the
incremental threshold was read as a cosine on Dot and Euclid (of 30 fresh near-duplicates
30 merged on Cosine, 25 on Dot, 13 on Euclid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from reverie.config import Settings
from reverie.errors import ConfigError
from reverie.memory import Reverie
from reverie.storage import payload as p

from helpers import near_duplicates

GROUPS, DIM = 10, 16


def vectors(unit: bool) -> tuple[np.ndarray, np.ndarray]:
    """Three near-duplicates per group; off unit length by a random factor in [0.5, 2]."""
    found, labels = near_duplicates(groups=GROUPS, per_group=3, dim=DIM, noise=0.15, seed=4)
    if not unit:
        found = found * np.random.default_rng(5).uniform(0.5, 2.0, size=(len(found), 1)).astype(np.float32)
    return found, labels


def write(client: QdrantClient, rows: list[int], found: np.ndarray, labels: np.ndarray) -> None:
    points = [
        models.PointStruct(
            id=i, vector=found[i].tolist(), payload={"text": f"g{labels[i]} m{i}", "user_id": "u1"}
        )
        for i in rows
    ]
    client.upsert("memories", points)


def top_groups(client: QdrantClient, found: np.ndarray, labels: np.ndarray) -> list[bool]:
    """The library's own search: does each memory's vector find its own group first?"""
    right = []
    for i, vector in enumerate(found):
        hit = client.query_points("memories", query=vector.tolist(), limit=1).points[0]
        right.append(
            hit.payload["text"].startswith(f"g{labels[i]} ") or str(i) in map(str, _members(hit.payload))
        )
    return right


def _members(payload: dict) -> list:
    return p.meta(payload).get("merged_from", [])


def opened(path: Path) -> Reverie:
    settings = Settings()
    settings.storage.url = f"file:{path}"
    settings.storage.data_dir = path.parent / "data"
    settings.inversion.model = "none"
    return Reverie.open(settings)


@pytest.mark.parametrize("unit", [True, False], ids=["unit", "unnormalised"])
@pytest.mark.parametrize("distance", list(models.Distance), ids=lambda d: d.value)
def test_each_distance_merges_where_its_search_looks_or_says_why_not(
    tmp_path: Path, distance: models.Distance, unit: bool
) -> None:
    found, labels = vectors(unit)
    path = tmp_path / "q"
    client = QdrantClient(path=str(path))
    client.create_collection("memories", vectors_config=models.VectorParams(size=DIM, distance=distance))
    first_two = [i for i in range(len(found)) if i % 3 < 2]
    write(client, first_two, found, labels)
    before = sum(top_groups(client, found, labels))
    client.close()
    honoured = unit or distance in (models.Distance.COSINE, models.Distance.DOT)
    with opened(path) as rv:
        if not honoured:
            with pytest.raises(ConfigError, match=f"searched by {distance.value} distance.*not unit length"):
                rv.consolidate()
            assert rv.stats()["merged"] == 0
            return
        assert len(rv.consolidate().merges) == GROUPS
    client = QdrantClient(path=str(path))
    write(client, [i for i in range(len(found)) if i % 3 == 2], found, labels)  # a third, fresh
    client.close()
    with opened(path) as rv:
        report = rv.consolidate()  # incremental: neighbours from the index, judged by cosine
        assert report.route == "neighbours" and len(report.merges) == GROUPS, report.summary()
        for merged in (r for r in rv.live_records() if p.meta(r.payload).get("kind") == p.MERGED):
            members = [found[int(i)] for i in _originals(rv, merged)]
            length = np.linalg.norm(merged.vector)
            if distance == models.Distance.DOT:  # its members' weighted mean length
                assert length == pytest.approx(np.mean([np.linalg.norm(m) for m in members]), rel=1e-3)
            else:
                assert length == pytest.approx(1.0, abs=1e-4)
        runs = [r.run_id for r in rv.run_log.runs() if r.kind == "consolidate"]
    client = QdrantClient(path=str(path))
    after = sum(top_groups(client, found, labels))
    client.close()
    assert after >= before == len(found), (before, after)
    with opened(path) as rv:  # undo is exact: the archive keeps the collection's distance
        for run_id in runs:  # newest first
            rv.undo(run_id)
        restored = {int(r.id): r.vector for r in rv.live_records()}
    expected = (
        found if distance != models.Distance.COSINE else found / np.linalg.norm(found, axis=1, keepdims=True)
    )
    assert sorted(restored) == list(range(len(found)))
    np.testing.assert_allclose(np.stack([restored[i] for i in range(len(found))]), expected, atol=1e-5)


def _originals(rv: Reverie, merged) -> list:
    return rv.lineage(merged)
