"""The points a run considers, with their vectors packed into one matrix of unit rows.

A full pass over a million points must not hold a numpy array per record plus a stacked
copy plus a normalised copy (4.5 GB of vectors at 384 dimensions): records here hold row
views of a single float32 matrix, and the rows are the unit vectors the pairing uses.
Stored vectors of a cosine collection are unit already (Qdrant normalises them on write),
so those rows stay bit for bit as read: fingerprints and archive copies see exactly what
was stored. A row that needs scaling is scaled in the matrix and its record keeps its own
copy of the stored values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from reverie.storage import Record

UNIT_TOLERANCE = 1e-6  # a row within this of norm 1 counts as unit (cosine error <= 1e-6)


@dataclass
class Gathered:
    records: list[Record]
    unit: np.ndarray  # one row per record, unit length (rows of invalid vectors left as read)

    @classmethod
    def pack(cls, records: Iterable[Record], capacity: int = 0) -> Gathered:
        """Pack records as they stream in (a scroll): each vector is copied into the
        matrix and the record's own array dropped, so only one copy is ever held."""
        packed: list[Record] = []
        matrix = np.empty((0, 0), dtype=np.float32)
        for record in records:
            vector = np.asarray(record.vector, dtype=np.float32)
            if not packed:
                matrix = np.empty((max(capacity, 1), vector.size), dtype=np.float32)
            elif len(packed) == len(matrix):  # more points than counted: grow, re-point
                matrix = np.concatenate([matrix, np.empty_like(matrix[: len(matrix) // 2 + 1])])
                for row, earlier in enumerate(packed):
                    earlier.vector = matrix[row]
            row = len(packed)
            packed.append(record)
            if vector.shape != matrix.shape[1:]:  # no vector of this collection: left out later
                matrix[row] = np.nan
                continue
            matrix[row] = vector
            record.vector = matrix[row]
        matrix = matrix[: len(packed)]
        _normalise_rows(packed, matrix)
        return cls(packed, matrix)

    def select(self, rows: np.ndarray) -> Gathered:
        """A subset (a partition, the consolidatable rows); all rows in order: no copy."""
        if rows.size == len(self.records) and np.array_equal(rows, np.arange(rows.size)):
            return self
        return Gathered([self.records[i] for i in rows], self.unit[rows])

    def __len__(self) -> int:
        return len(self.records)


def _normalise_rows(records: list[Record], matrix: np.ndarray) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        # einsum: no squared copy of the matrix (np.linalg.norm makes one: 1.5 GB at 1M)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix, dtype=np.float64))
    scale = np.flatnonzero(np.isfinite(norms) & (norms > 0) & (np.abs(norms - 1) > UNIT_TOLERANCE))
    for row in scale:
        records[row].vector = matrix[row].copy()
    matrix[scale] /= norms[scale, None]
