"""Candidate pairs: which points are similar enough to be near-duplicates.

Memory stays linear in the number of pairs: the exact route multiplies one block of
rows at a time against the partition and keeps only the pairs above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Pairs:
    """Undirected pairs (i < j) of row indices with their cosine similarity."""

    rows: np.ndarray
    cols: np.ndarray
    sims: np.ndarray

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))

    @classmethod
    def concat(cls, parts: list[Pairs]) -> Pairs:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.cols for p in parts]),
            np.concatenate([p.sims for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.rows.size)

    def lenient(self, lenience: np.ndarray, threshold: float) -> Pairs:
        """The pairs that reach `threshold` once each is granted the lenience of its
        fresher row (gist over time: old memories merge at a lower similarity), with
        their similarities raised by it."""
        sims = self.sims + np.minimum(lenience[self.rows], lenience[self.cols]).astype(np.float32)
        keep = sims >= threshold
        return Pairs(self.rows[keep], self.cols[keep], sims[keep])


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """A float32 copy with rows scaled to unit length."""
    vectors = np.array(vectors, dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return vectors


BLOCK_BYTES = 256 * 2**20  # one similarity block: 256 MiB at most, whatever N is


def exact_pairs(unit: np.ndarray, threshold: float, block_size: int = 2048) -> Pairs:
    """All pairs with cosine >= threshold, by blocked matrix products (rows must be unit).

    Each block is at most `block_size` rows and BLOCK_BYTES of similarities.
    """
    n = unit.shape[0]
    block_size = max(1, min(block_size, BLOCK_BYTES // (4 * max(n, 1))))
    parts: list[Pairs] = []
    for start in range(0, n, block_size):
        block = unit[start : start + block_size] @ unit[start:].T
        # keep only the upper triangle: column index (relative to start) > row index
        r, c = np.nonzero(block >= threshold)
        keep = c > r
        r, c = r[keep], c[keep]
        parts.append(
            Pairs(
                (r + start).astype(np.int64),
                (c + start).astype(np.int64),
                block[r, c].astype(np.float32),
            )
        )
    return Pairs.concat(parts)


def cell_pairs(
    unit: np.ndarray, threshold: float, cell_size: int = 1000, probes: int = 4, seed: int = 0
) -> Pairs:
    """Pairs with cosine >= threshold without all n² products, for large partitions.

    An inverted-file index: k-means cells of about `cell_size` rows; each row is compared
    with the rows whose nearest cell is among its own `probes` nearest cells. Cost grows
    as n * probes * cell_size instead of n². A pair is missed only when neither row has
    the other's cell among its probes; near-duplicates (cosine >= 0.8) sit in the same or
    neighbouring cells, so recall against exact pairs stays above 0.99 (bench/).
    """
    n = unit.shape[0]
    centres = _balanced_centres(unit, cell_size, seed)
    cells = len(centres)
    probes = min(probes, cells)
    nearest = _nearest_cells(unit, centres, probes)  # n x probes, nearest first
    home = nearest[:, 0]
    order = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[order], np.arange(cells + 1))
    visitor_cells = nearest.ravel()
    visitor_rows = np.repeat(np.arange(n), probes)
    visit_order = np.argsort(visitor_cells, kind="stable")
    visit_bounds = np.searchsorted(visitor_cells[visit_order], np.arange(cells + 1))
    parts: list[Pairs] = []
    for cell in range(cells):
        members = order[bounds[cell] : bounds[cell + 1]]
        visitors = visitor_rows[visit_order[visit_bounds[cell] : visit_bounds[cell + 1]]]
        if members.size == 0 or visitors.size == 0:
            continue
        # a crowded cell is compared in blocks: memory stays bounded whatever k-means made
        rows = max(1, BLOCK_BYTES // (4 * members.size))
        target = unit[members].T
        for start in range(0, visitors.size, rows):
            chunk = visitors[start : start + rows]
            sims = unit[chunk] @ target
            r, c = np.nonzero(sims >= threshold)
            a, b = chunk[r], members[c]
            keep = a != b
            a, b, sim = a[keep], b[keep], sims[r[keep], c[keep]]
            parts.append(Pairs(np.minimum(a, b), np.maximum(a, b), sim.astype(np.float32)))
    found = Pairs.concat(parts)
    _, first = np.unique(found.rows * n + found.cols, return_index=True)  # found twice, kept once
    return Pairs(found.rows[first], found.cols[first], found.sims[first])


def _balanced_centres(unit: np.ndarray, cell_size: int, seed: int, rounds: int = 3) -> np.ndarray:
    """k-means centres of cells of about `cell_size` rows, crowded cells split.

    Real data is lumpy: plain k-means leaves some cells many times the median (7,519
    rows against 426 at 100k), and a cell costs members x visitors products, so the
    crowded ones dominate. A cell over twice `cell_size` is split by a k-means of its own.
    """
    n = unit.shape[0]
    centres = _kmeans(unit, max(1, n // cell_size), seed)
    for _ in range(rounds):
        home = _nearest_cells(unit, centres, 1)[:, 0]
        sizes = np.bincount(home, minlength=len(centres))
        crowded = np.flatnonzero(sizes > 2 * cell_size)
        if crowded.size == 0:
            break
        order = np.argsort(home, kind="stable")
        bounds = np.searchsorted(home[order], np.arange(len(centres) + 1))
        added = []
        for cell in crowded:
            members = unit[order[bounds[cell] : bounds[cell + 1]]]
            parts = _kmeans(members, -(-len(members) // cell_size), seed)
            centres[cell] = parts[0]
            added.append(parts[1:])
        centres = np.vstack([centres, *added])
    return centres


def _kmeans(unit: np.ndarray, cells: int, seed: int) -> np.ndarray:
    """Unit centres of `cells` k-means cells, fitted on a sample of 64 rows per cell."""
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    sample = unit[rng.choice(unit.shape[0], size=min(unit.shape[0], 64 * cells), replace=False)]
    kmeans = MiniBatchKMeans(cells, random_state=seed, n_init=1, batch_size=8192).fit(sample)
    return unit_rows(kmeans.cluster_centers_)


def _nearest_cells(unit: np.ndarray, centres: np.ndarray, probes: int) -> np.ndarray:
    """The `probes` nearest cells of each row, nearest first. In blocks of rows sized so
    the scores and argpartition's full index array stay near BLOCK_BYTES."""
    out = np.empty((unit.shape[0], probes), dtype=np.int64)
    block = max(1, BLOCK_BYTES // (12 * len(centres)))  # float32 scores + int64 indices
    for start in range(0, unit.shape[0], block):
        scores = unit[start : start + block] @ centres.T
        if probes == 1:
            out[start : start + block, 0] = scores.argmax(axis=1)
            continue
        top = np.argpartition(scores, -probes, axis=1)[:, -probes:]
        ranked = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + block] = np.take_along_axis(top, ranked, axis=1)
    return out
