"""Candidate pairs and clustering on plain arrays (no storage involved)."""

import numpy as np
import pytest

from reverie.consolidation.candidates import cell_pairs, exact_pairs, unit_rows
from reverie.consolidation.clustering import ClusterParams, centroid, cluster

from helpers import near_duplicates


def brute_force_pairs(unit: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = unit @ unit.T
    i, j = np.nonzero(np.triu(sims >= threshold, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("block_size", [16, 37, 4096])
def test_exact_pairs_match_brute_force_for_any_block_size(block_size: int) -> None:
    vectors, _ = near_duplicates(groups=20, per_group=4, noise=0.5, seed=3)
    unit = unit_rows(vectors)
    pairs = exact_pairs(unit, 0.8, block_size)
    found = set(zip(pairs.rows.tolist(), pairs.cols.tolist(), strict=True))
    assert found == brute_force_pairs(unit, 0.8)
    assert len(found) > 0
    np.testing.assert_allclose(pairs.sims, (unit[pairs.rows] * unit[pairs.cols]).sum(1), atol=1e-5)


def test_groups_are_recovered_by_every_algorithm() -> None:
    vectors, labels = near_duplicates(groups=10, per_group=3, seed=1)
    unit = unit_rows(vectors)
    pairs = exact_pairs(unit, 0.9)
    for algorithm, linkage in [
        ("agglomerative", "complete"),
        ("agglomerative", "average"),
        ("dbscan", "complete"),
    ]:
        params = ClusterParams(threshold=0.9, algorithm=algorithm, linkage=linkage)  # type: ignore[arg-type]
        groups = cluster(unit, np.ones(len(unit)), pairs, params)
        assert sorted(sorted(labels[g].tolist()) for g in groups) == [[k] * 3 for k in range(10)]


def chain(n: int, step: float) -> np.ndarray:
    """Points on a circle arc: neighbours are close, the ends are far apart."""
    angles = np.arange(n) * step
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def test_complete_linkage_never_chains_but_dbscan_does() -> None:
    unit = chain(8, 0.3)  # neighbour cosine 0.955; ends cosine -0.5
    pairs = exact_pairs(unit, 0.9)
    complete = cluster(unit, np.ones(8), pairs, ClusterParams(0.9, min_member_similarity=-1.0))
    for group in complete:
        sims = unit[group] @ unit[group].T
        assert sims.min() >= 0.9 - 1e-6
    dbscan = cluster(
        unit,
        np.ones(8),
        pairs,
        ClusterParams(0.9, algorithm="dbscan", min_member_similarity=-1.0, max_cluster_size=100),
    )
    assert [g.size for g in dbscan] == [8]


def test_guards_cap_size_and_drop_far_members() -> None:
    unit = chain(8, 0.3)
    pairs = exact_pairs(unit, 0.9)
    capped = cluster(
        unit,
        np.ones(8),
        pairs,
        ClusterParams(0.9, algorithm="dbscan", max_cluster_size=3, min_member_similarity=-1.0),
    )
    assert capped and all(2 <= g.size <= 3 for g in capped)
    tight = cluster(
        unit, np.ones(8), pairs, ClusterParams(0.9, algorithm="dbscan", min_member_similarity=0.95)
    )
    for group in tight:
        assert (unit[group] @ centroid(unit, np.ones(8), group)).min() >= 0.95


def test_identical_vectors_cluster_under_dbscan() -> None:
    unit = np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (3, 1))
    pairs = exact_pairs(unit, 0.99)
    groups = cluster(unit, np.ones(3), pairs, ClusterParams(0.99, algorithm="dbscan"))
    assert [sorted(g.tolist()) for g in groups] == [[0, 1, 2]]


def test_centroid_is_weighted() -> None:
    unit = np.array([[1, 0], [0, 1]], dtype=np.float32)
    c = centroid(unit, np.array([3.0, 1.0]), np.array([0, 1]))
    np.testing.assert_allclose(c, np.array([3, 1]) / np.sqrt(10), atol=1e-6)


def test_cell_pairs_find_the_exact_pairs_of_a_large_partition() -> None:
    vectors, _ = near_duplicates(groups=300, per_group=4, dim=64, noise=0.5, seed=5)
    unit = unit_rows(vectors)
    exact = brute_force_pairs(unit, 0.8)
    pairs = cell_pairs(unit, 0.8, cell_size=50, probes=8)
    found = set(zip(pairs.rows.tolist(), pairs.cols.tolist(), strict=True))
    assert len(exact) > 300 and found <= exact
    assert len(found) / len(exact) >= 0.99
    assert len(found) == len(pairs), "a pair found from both cells is kept once"
    np.testing.assert_allclose(pairs.sims, (unit[pairs.rows] * unit[pairs.cols]).sum(1), atol=1e-5)


def test_crowded_cells_are_split_so_no_cell_dominates_the_cost() -> None:
    """Lumpy data (most points around one topic) makes plain k-means leave crowded
    cells; a crowded cell costs members x visitors products, so it is split."""
    from reverie.consolidation.candidates import _balanced_centres, _nearest_cells

    rng = np.random.default_rng(0)
    topic = rng.normal(size=64)
    lump = unit_rows(topic + 0.6 * rng.normal(size=(3000, 64)))
    spread = unit_rows(rng.normal(size=(1000, 64)))
    unit = np.vstack([lump, spread]).astype(np.float32)
    plain = _balanced_centres(unit, cell_size=100, seed=0, rounds=0)
    balanced = _balanced_centres(unit, cell_size=100, seed=0)

    def largest(centres: np.ndarray) -> int:
        return int(np.bincount(_nearest_cells(unit, centres, 1)[:, 0]).max())

    assert largest(plain) > 200, "the data should crowd plain k-means cells"
    assert largest(balanced) <= 200
