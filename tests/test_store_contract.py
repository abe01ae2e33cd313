"""One contract, both adapters: qdrant-edge (embedded) and qdrant-client (local mode)."""

import numpy as np
import pytest

from reverie.errors import InvalidInputError, StorageError
from reverie.ledger.census import searchable_count
from reverie.storage import Filter, HasId, IsEmpty, Match, MatchAny, QueryRequest, Record, Store
from reverie.storage import payload as p
from reverie.storage.base import SparseVector, VectorSchema

UUID = "0b6f0d6e-8a57-4a1c-9a43-5b7c5d4b9f10"


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def filled(store: Store) -> Store:
    store.ensure_collection("c", VectorSchema.single(4))
    store.upsert(
        "c",
        [
            Record(1, unit(1, 0, 0, 0), {"text": "a", "user_id": "u1", "_reverie": {"state": "live"}}),
            Record(2, unit(1, 0.1, 0, 0), {"text": "b", "user_id": "u1"}),
            Record(UUID, unit(0, 1, 0, 0), {"text": "c", "user_id": "u2", "pinned": True}),
            Record(4, unit(0, 0, 1, 1), {"text": "d", "_reverie": {"state": "committing"}}),
        ],
    )
    return store


def test_collections(store: Store) -> None:
    assert not store.collection_exists("c")
    assert store.vector_size("c") is None
    store.ensure_collection("c", VectorSchema.single(4))
    store.ensure_collection("c", VectorSchema.single(4))  # idempotent
    assert store.collection_exists("c")
    assert store.vector_size("c") == 4
    assert store.schema("c") == VectorSchema.single(4)
    with pytest.raises(StorageError, match="4-dimensional"):
        store.ensure_collection("c", VectorSchema.single(8))
    with pytest.raises(StorageError, match="no dense vector named 'dense'"):
        store.ensure_collection("c", VectorSchema.single(4, "dense"))


def test_a_collection_kept_on_disk_answers_as_one_in_memory(store: Store) -> None:
    store.ensure_collection("cold", VectorSchema.single(4), on_disk=True)
    store.upsert("cold", [Record(1, unit(1, 0, 0, 0), {"t": 1}), Record(2, unit(0, 1, 0, 0), {"t": 2})])
    assert np.allclose(store.retrieve("cold", [2])[0].vector, unit(0, 1, 0, 0))
    (hit,) = store.query("cold", QueryRequest(vector=unit(1, 0.1, 0, 0), limit=1))
    assert hit.id == 1


def test_named_and_sparse_vectors_round_trip(store: Store) -> None:
    """A collection as agents' tools make them: a named dense vector beside others and a
    sparse one; the vector in use is the record's, the rest travel in `others`."""
    schema = VectorSchema((("dense", 4), ("image", 2)), (("bm25", True),))
    store.ensure_collection("n", schema)
    assert store.schema("n") == schema
    store.use_vector("n", "dense")
    assert store.vector_size("n") == 4
    sparse = SparseVector.of([3, 17], [0.5, 1.25])
    store.upsert("n", [Record(1, unit(1, 0, 0, 0), {"t": 1}, {"image": unit(0, 1), "bm25": sparse})])
    store.upsert("n", [Record(2, unit(0, 1, 0, 0), {"t": 2})])
    found = {r.id: r for r in store.retrieve("n", [1, 2])}
    np.testing.assert_allclose(found[1].vector, unit(1, 0, 0, 0), atol=1e-6)
    np.testing.assert_allclose(found[1].others["image"], unit(0, 1), atol=1e-6)
    assert found[1].others["bm25"].indices.tolist() == [3, 17]
    np.testing.assert_allclose(found[1].others["bm25"].values, [0.5, 1.25])
    assert found[2].others == {}
    hits = store.query("n", QueryRequest(unit(0, 1, 0, 0), limit=1))
    assert hits[0].id == 2
    with pytest.raises(ValueError, match="negative index"):
        SparseVector.of([-1], [0.5])


def test_retrieve_returns_exact_vectors_and_payloads(filled: Store) -> None:
    found = {r.id: r for r in filled.retrieve("c", [1, UUID, 99])}
    assert set(found) == {1, UUID}
    np.testing.assert_allclose(found[1].vector, unit(1, 0, 0, 0), atol=1e-6)
    assert found[UUID].payload == {"text": "c", "user_id": "u2", "pinned": True}
    assert filled.retrieve("c", [1], with_vectors=False)[0].vector is None


def test_scroll_hands_over_only_the_payload_keys_asked_for(filled: Store) -> None:
    ids_only = {r.id: r.payload for r in filled.scroll("c", payload_keys=())}
    assert ids_only == {1: {}, 2: {}, UUID: {}, 4: {}}
    states = {r.id: r.payload for r in filled.scroll("c", payload_keys=("user_id", "_reverie.state"))}
    assert states[1] == {"user_id": "u1", "_reverie": {"state": "live"}}
    assert states[UUID] == {"user_id": "u2"}
    assert states[4] == {"_reverie": {"state": "committing"}}


def test_scroll_pages_and_filters(filled: Store) -> None:
    assert {r.id for r in filled.scroll("c", batch_size=1)} == {1, 2, UUID, 4}
    u1 = filled.scroll("c", Filter(must=(Match("user_id", "u1"),)), with_vectors=True)
    records = list(u1)
    assert {r.id for r in records} == {1, 2}
    assert all(r.vector is not None and r.vector.shape == (4,) for r in records)
    no_meta = Filter(must=(IsEmpty("_reverie"),))
    assert {r.id for r in filled.scroll("c", no_meta)} == {2, UUID}
    either = Filter(should=(IsEmpty("_reverie"), Match("_reverie.state", "live")))
    assert {r.id for r in filled.scroll("c", either)} == {1, 2, UUID}
    not_these = Filter(must_not=(MatchAny("_reverie.state", ("committing",)), Match("user_id", "u2")))
    assert {r.id for r in filled.scroll("c", not_these)} == {1, 2}
    assert {r.id for r in filled.scroll("c", Filter(must=(HasId((1, UUID)),)))} == {1, UUID}


def test_query_threshold_filter_and_batch(filled: Store) -> None:
    hits = filled.query("c", QueryRequest(unit(1, 0, 0, 0), 10, score_threshold=0.9))
    assert [h.id for h in hits] == [1, 2]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score >= hits[1].score
    only_u2 = Filter(must=(Match("user_id", "u2"),))
    batch = filled.query_batch(
        "c",
        [
            QueryRequest(unit(1, 0, 0, 0), 2, with_vectors=True),
            QueryRequest(unit(1, 0, 0, 0), 5, filter=only_u2),
        ],
    )
    assert len(batch[0]) == 2 and batch[0][0].vector is not None
    assert [h.id for h in batch[1]] == [UUID]


def test_query_returns_only_the_payload_paths_asked_for(filled: Store) -> None:
    """Neighbour queries ask only for the tenant paths: the rest of a payload is not converted."""
    filled.upsert("c", [Record(5, unit(0, 0, 0, 1), {"text": "e", "metadata": {"user_id": "u3", "x": 1}})])
    near = unit(0, 0, 0, 1)
    [hit] = filled.query("c", QueryRequest(near, 1, payload_keys=("metadata.user_id", "user_id")))
    assert (hit.id, hit.payload) == (5, {"metadata": {"user_id": "u3"}})
    [bare] = filled.query("c", QueryRequest(near, 1, payload_keys=()))
    assert (bare.id, bare.payload) == (5, {})
    [whole] = filled.query("c", QueryRequest(near, 1))
    assert whole.payload == {"text": "e", "metadata": {"user_id": "u3", "x": 1}}


def test_delete_set_payload_count(filled: Store) -> None:
    assert filled.count("c") == 4
    filled.set_payload("c", [1, 2], {"state": "fresh"}, key="_reverie")
    found = {r.id: r.payload for r in filled.retrieve("c", [1, 2], with_vectors=False)}
    assert found[1]["_reverie"] == {"state": "fresh"}
    assert found[2]["_reverie"] == {"state": "fresh"} and found[2]["text"] == "b"
    filled.set_payload("c", [UUID, 77], {"note": "x"})  # 77 does not exist: skipped
    assert filled.retrieve("c", [77]) == []
    assert filled.retrieve("c", [UUID])[0].payload["note"] == "x"
    assert filled.count("c", Filter(must=(Match("_reverie.state", "fresh"),))) == 2
    filled.delete("c", [1, UUID, 78])
    filled.upsert("c", [Record(2, unit(0, 0, 1, 0), {"text": "b again"})])  # a rewrite adds no point
    assert filled.count("c") == 2
    assert filled.retrieve("c", [1]) == []


@pytest.mark.parametrize("must", [(), (Match("user_id", "u1"),)])
def test_searchable_count_is_the_count_of_the_searchable_filter(filled: Store, must: tuple) -> None:
    """Counted as all less the unsearchable (cheap from the indexes), it must agree with
    the must_not filter it stands for: an in-flight merge (4) and a quarantined point."""
    filled.set_payload("c", [2], {"state": p.QUARANTINED}, key=p.KEY)
    expected = filled.count("c", p.searchable_filter(Filter(must=must)))
    assert searchable_count(filled, "c", *must) == expected == (1 if must else 2)


def test_wrong_dimension_is_an_input_error(filled: Store) -> None:
    with pytest.raises(InvalidInputError, match="dimension"):
        filled.upsert("c", [Record(9, np.ones(3, dtype=np.float32), {})])
    assert filled.count("c") == 4


def test_payload_index_is_idempotent(filled: Store) -> None:
    filled.create_payload_index("c", "user_id")
    filled.create_payload_index("c", "user_id")
    assert filled.count("c", Filter(must=(Match("user_id", "u1"),))) == 2


def test_boolean_match_is_refused() -> None:
    """qdrant-edge-py 0.9 matches True as the integer 1; the contract refuses booleans."""
    with pytest.raises(TypeError, match="boolean"):
        Match("pinned", True)


def test_facet_counts_each_value_from_the_index(filled: Store) -> None:
    """Per value, the points holding it (a list counts under each of its values, a point
    without the key under none), within the filter when one is given."""
    filled.create_payload_index("c", "user_id")
    filled.upsert("c", [Record(5, unit(0, 0, 0, 1), {"user_id": ["u2", "u3"]})])
    assert filled.facet("c", "user_id") == {"u1": 2, "u2": 2, "u3": 1}
    assert filled.facet("c", "user_id", Filter(must=(Match("text", "a"),))) == {"u1": 1}
