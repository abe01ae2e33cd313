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


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


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
