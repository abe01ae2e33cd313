"""Packing the points of a run into one matrix of unit rows."""

import numpy as np

from reverie.consolidation.gathering import Gathered
from reverie.storage import Record


def records(vectors: np.ndarray) -> list[Record]:
    return [Record(i, v.copy(), {}) for i, v in enumerate(vectors)]


def test_unit_rows_are_kept_bit_for_bit_and_records_share_the_matrix() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gathered = Gathered.pack(records(vectors), capacity=50)
    np.testing.assert_array_equal(gathered.unit, vectors)
    assert all(np.shares_memory(r.vector, gathered.unit) for r in gathered.records)


def test_rows_that_need_scaling_are_scaled_and_their_records_keep_the_stored_values() -> None:
    vectors = np.array([[3, 4], [0.6, 0.8], [0, 0], [np.nan, 1]], dtype=np.float32)
    gathered = Gathered.pack(records(vectors))
    np.testing.assert_allclose(gathered.unit[0], [0.6, 0.8])
    np.testing.assert_array_equal(gathered.records[0].vector, [3, 4])
    assert not np.shares_memory(gathered.records[0].vector, gathered.unit)
    np.testing.assert_array_equal(gathered.unit[2], [0, 0])  # invalid rows left as read
    assert np.isnan(gathered.unit[3, 0])


def test_more_points_than_counted_grow_the_matrix_and_re_point_every_record() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(40, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gathered = Gathered.pack(records(vectors), capacity=3)  # a scroll saw writes since the count
    assert len(gathered) == 40
    for row, record in enumerate(gathered.records):
        assert record.id == row
        np.testing.assert_array_equal(record.vector, vectors[row])
        assert np.shares_memory(record.vector, gathered.unit)


def test_selecting_every_row_copies_nothing_and_a_subset_keeps_records_and_rows_aligned() -> None:
    vectors = np.eye(5, dtype=np.float32)
    gathered = Gathered.pack(records(vectors))
    assert gathered.select(np.arange(5)) is gathered
    subset = gathered.select(np.array([4, 1]))
    assert [r.id for r in subset.records] == [4, 1]
    np.testing.assert_array_equal(subset.unit, vectors[[4, 1]])
