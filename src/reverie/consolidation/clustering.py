"""Clusters from the sparse candidate graph, with scikit-learn.

Takes arrays, returns groups of row indices; knows nothing of Qdrant.
- agglomerative: per connected component, on its small dense distance matrix.
  Complete linkage means every pair inside a cluster is a near-duplicate.
- dbscan: on the sparse precomputed distance graph; it can chain, so the guards
  below (maximum size, minimum member-to-centroid cosine) matter more there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import DBSCAN, AgglomerativeClustering

from reverie.consolidation.candidates import Pairs

Algorithm = Literal["agglomerative", "dbscan"]
Linkage = Literal["complete", "average"]


@dataclass(frozen=True)
class ClusterParams:
    threshold: float
    algorithm: Algorithm = "agglomerative"
    linkage: Linkage = "complete"
    max_cluster_size: int = 128
    min_member_similarity: float = 0.75


def cluster(
    unit: np.ndarray,
    weights: np.ndarray,
    pairs: Pairs,
    params: ClusterParams,
    lenience: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Groups (>= 2 rows each) of near-duplicates among the rows of `unit`.

    `weights` (how many memories each row stands for) weigh the centroid the guards use.
    `lenience` (per row; gist over time): added to a pair's similarity (the fresher row's)
    and to a member's similarity to its centroid; `pairs` come already raised by it.
    """
    if len(pairs) == 0:
        return []
    lenience = np.zeros(unit.shape[0], dtype=np.float32) if lenience is None else lenience
    if params.algorithm == "dbscan":
        raw = _dbscan(unit.shape[0], pairs, params.threshold)
    else:
        raw = _agglomerative(unit, pairs, params, lenience)
    groups: list[np.ndarray] = []
    for group in raw:
        groups.extend(_guard(unit, weights, group, params, lenience))
    return groups


def _graph(n: int, pairs: Pairs, data: np.ndarray) -> coo_matrix:
    rows = np.concatenate([pairs.rows, pairs.cols])
    cols = np.concatenate([pairs.cols, pairs.rows])
    return coo_matrix((np.concatenate([data, data]), (rows, cols)), shape=(n, n))


def _components(n: int, pairs: Pairs) -> list[np.ndarray]:
    graph = _graph(n, pairs, np.ones(len(pairs), dtype=np.int8)).tocsr()
    count, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(count + 1))
    comps = [order[bounds[i] : bounds[i + 1]] for i in range(count)]
    return [c for c in comps if c.size >= 2]


def _agglomerative(
    unit: np.ndarray, pairs: Pairs, params: ClusterParams, lenience: np.ndarray
) -> list[np.ndarray]:
    groups: list[np.ndarray] = []
    for comp in _components(unit.shape[0], pairs):
        if comp.size == 2:
            groups.append(comp)
            continue
        sub = unit[comp]
        granted = np.minimum.outer(lenience[comp], lenience[comp])
        distance = np.clip(1.0 - (sub @ sub.T + granted), 0.0, 2.0).astype(np.float64)
        np.fill_diagonal(distance, 0.0)
        if distance.max() < 1.0 - params.threshold + 1e-9:  # every pair close: any linkage joins all
            groups.append(comp)
            continue
        labels = AgglomerativeClustering(
            n_clusters=None,
            metric="precomputed",
            linkage=params.linkage,
            distance_threshold=1.0 - params.threshold + 1e-9,
        ).fit_predict(distance)
        groups.extend(_split_by_label(comp, labels))
    return groups


def _dbscan(n: int, pairs: Pairs, threshold: float) -> list[np.ndarray]:
    # DBSCAN on a sparse precomputed matrix treats stored entries as the only neighbours;
    # identical vectors have distance 0, so store a tiny positive value to keep them.
    distance = np.maximum(1.0 - pairs.sims.astype(np.float64), 1e-12)
    graph = _graph(n, pairs, distance).tocsr()
    labels = DBSCAN(eps=1.0 - threshold + 1e-9, min_samples=2, metric="precomputed").fit_predict(graph)
    members = np.flatnonzero(labels >= 0)
    return _split_by_label(members, labels[members])


def _split_by_label(rows: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    groups = []
    for label in np.unique(labels):
        group = rows[labels == label]
        if group.size >= 2:
            groups.append(group)
    return groups


def centroid(unit: np.ndarray, weights: np.ndarray, group: np.ndarray) -> np.ndarray:
    """normalize(sum of weight_i * v_i): the merged vector of a group."""
    total = (weights[group, None] * unit[group]).sum(axis=0)
    return (total / np.linalg.norm(total)).astype(np.float32)


def _guard(
    unit: np.ndarray, weights: np.ndarray, group: np.ndarray, params: ClusterParams, lenience: np.ndarray
) -> list[np.ndarray]:
    """Enforce the guards: drop members far from the centroid, split oversized groups."""
    group = _drop_outliers(unit, weights, group, params.min_member_similarity, lenience)
    if group.size < 2:
        return []
    if group.size <= params.max_cluster_size:
        return [group]
    # Too big: cut it into chunks of nearest neighbours of the centroid, most central first.
    order = group[np.argsort(-(unit[group] @ centroid(unit, weights, group)), kind="stable")]
    size = params.max_cluster_size
    chunks = [order[i : i + size] for i in range(0, order.size, size)]
    return [c for chunk in chunks for c in _guard(unit, weights, chunk, params, lenience)]


def _drop_outliers(
    unit: np.ndarray, weights: np.ndarray, group: np.ndarray, min_similarity: float, lenience: np.ndarray
) -> np.ndarray:
    while group.size >= 2:
        sims = unit[group] @ centroid(unit, weights, group) + lenience[group]
        worst = int(np.argmin(sims))
        if sims[worst] >= min_similarity:
            break
        group = np.delete(group, worst)
    return group
